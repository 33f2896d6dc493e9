/* Unit tests of the fault-injection backend (io/fault.c, applied by io/ring.c): the spec parser
 * accepts what io/fault.h documents and rejects everything else with CS_EOPTVAL; "Nth call"
 * triggers fire exactly once, at call N; probabilities are reproducible for a seed; and, through
 * the public API, a failed WAL write, a failed fdatasync, a short write and a torn write followed
 * by a crash each keep the engine's promises: the failing write and every later one return
 * CS_EIO, reads keep working, and after reopening every acknowledged put is there; a write
 * failing with ENOSPC fails its frame only, and the database stays writable. The file-operation
 * faults fail exactly their kind of io/file.c call, and alloc_fail fails the allocations of the
 * thread that installed it only. The power-cut journal (io/powercut.c): after a cut with any
 * seed, synced bytes always survive, unsynced writes are whole, torn at sector boundaries or
 * lost (each outcome seen across seeds), a file shrinks back only to its synced size, a range
 * written with RWF_DSYNC survives while an fdatasync does not cover a ring write that had not
 * completed, creations, renames and removals whose folder was not synced are undone (and kept
 * when it was), and the journal stays small. A kill at the Nth disk operation followed by a
 * cut loses no acknowledged put in sync mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cstore.h"
#include "io/fault.h"
#include "io/file.h"
#include "io/powercut.h"

#define CALLS 2000u /* calls made when checking triggers */

/* ---- parser ---- */

static void test_parser_accepts_documented_specs(void **state)
{
    (void)state;
    const char *good[] = {
        "seed=3,write_eio=100",
        "fsync_eio=1%",
        "short_write=0.5%",
        "torn_write=2",
        "enospc=100%",
        "write_enospc=0%",
        "latency_us=10",
        "seed=18446744073709551615",
        "write_eio=0.0000001%",
        "seed=1,write_eio=2,fsync_eio=3,short_write=4,torn_write=5,enospc=6,latency_us=7",
        "create_eio=1,read_eio=2,file_write_eio=3,file_sync_eio=4,dirsync_eio=5,rename_eio=6",
        "unlink_eio=1%,list_eio=2,alloc_fail=0.5%",
    };
    for (size_t i = 0; i < CS_ARRAY_SIZE(good); i++) {
        struct io_fault *f = NULL;
        int rc = io_fault_create(good[i], &f);
        if (rc != 0)
            fail_msg("\"%s\" rejected: %s", good[i], cs_strerror(rc));
        assert_non_null(f);
        io_fault_destroy(f);
    }
}

static void test_parser_rejects_malformed_specs(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "foo=1",
        "write_eio",
        "write_eio=",
        "write_eio=0",
        "write_eio=-1",
        "write_eio=1x",
        "write_eio= 1",
        "write_eio=101%",
        "write_eio=100.0000001%",
        "write_eio=1.%",
        "write_eio=.5%",
        "write_eio=1.12345678%",
        "write_eio=%",
        "seed=1,seed=2",
        "write_eio=1,",
        ",write_eio=1",
        "write_eio=1,,fsync_eio=2",
        "=3",
        "seed=18446744073709551616",
        "latency_us=4294967296",
        "WRITE_EIO=1",
        "bitflip=1",
        "powercut=3",    /* a cut needs its journal */
        "powercut_log=", /* an empty path */
        "rename_eio=1,rename_eio=2",
        "alloc_fail=0",
    };
    for (size_t i = 0; i < CS_ARRAY_SIZE(bad); i++) {
        struct io_fault *f = (struct io_fault *)1;
        int rc = io_fault_create(bad[i], &f);
        if (rc != CS_EOPTVAL)
            fail_msg("\"%s\" gave %d, expected CS_EOPTVAL", bad[i], rc);
        assert_null(f);
    }
    /* The option goes through the same parser. */
    cs_options *o = cs_options_new();
    assert_non_null(o);
    assert_int_equal(cs_options_set(o, "fault", "write_eio=zero"), CS_EOPTVAL);
    assert_int_equal(cs_options_set(o, "fault", "nosuchkey=1"), CS_EOPTVAL);
    assert_int_equal(cs_options_set(o, "fault", "seed=3,write_eio=100"), 0);
    assert_int_equal(cs_options_set(o, "fault", ""), 0);
    cs_options_free(o);
}

/* ---- triggers ---- */

static void test_nth_call_triggers_fire_exactly_once(void **state)
{
    (void)state;
    struct io_fault *f;
    assert_int_equal(
        io_fault_create("seed=9,write_eio=5,short_write=7,torn_write=9,fsync_eio=3,enospc=2", &f),
        0);
    unsigned eio = 0, shorts = 0, torn = 0, fsyncs = 0, allocs = 0;
    for (uint32_t n = 1; n <= CALLS; n++) {
        size_t prefix = SIZE_MAX;
        size_t len = 100 + n % 50;
        enum io_fault_action a = io_fault_on_write(f, len, &prefix);
        switch (a) {
        case IO_FAULT_EIO:
            assert_int_equal(n, 5);
            eio++;
            break;
        case IO_FAULT_SHORT:
            assert_int_equal(n, 7);
            assert_true(prefix < len);
            shorts++;
            break;
        case IO_FAULT_TORN_CRASH:
            assert_int_equal(n, 9);
            assert_true(prefix >= 1);
            assert_true(prefix < len);
            torn++;
            break;
        case IO_FAULT_ENOSPC:
            fail_msg("write_enospc was not asked for (call %u)", n);
            break;
        case IO_FAULT_NONE:
            break;
        }
        if (io_fault_on_fsync(f)) {
            assert_int_equal(n, 3);
            fsyncs++;
        }
        if (io_fault_on_allocate(f)) {
            assert_int_equal(n, 2);
            allocs++;
        }
    }
    assert_int_equal(eio, 1);
    assert_int_equal(shorts, 1);
    assert_int_equal(torn, 1);
    assert_int_equal(fsyncs, 1);
    assert_int_equal(allocs, 1);
    assert_int_equal(io_fault_latency_us(f), 0);
    io_fault_destroy(f);
}

/* Record which of CALLS writes a plan fails (bit per call) and how many. */
static unsigned write_pattern(const char *spec, uint8_t *bits)
{
    struct io_fault *f;
    assert_int_equal(io_fault_create(spec, &f), 0);
    unsigned fired = 0;
    memset(bits, 0, CALLS / 8);
    for (uint32_t n = 0; n < CALLS; n++) {
        size_t prefix;
        if (io_fault_on_write(f, 4096, &prefix) != IO_FAULT_NONE) {
            bits[n / 8] |= (uint8_t)(1u << (n % 8));
            fired++;
        }
    }
    io_fault_destroy(f);
    return fired;
}

static void test_probabilities_are_reproducible_for_a_seed(void **state)
{
    (void)state;
    static uint8_t a[CALLS / 8], b[CALLS / 8], c[CALLS / 8];
    unsigned na = write_pattern("seed=7,write_eio=30%", a);
    unsigned nb = write_pattern("seed=7,write_eio=30%", b);
    unsigned nc = write_pattern("seed=8,write_eio=30%", c);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, sizeof(a));
    assert_memory_not_equal(a, c, sizeof(a));
    /* 30% of 2000 calls: 600 expected, sd ~20. */
    assert_in_range(na, 450, 750);
    assert_in_range(nc, 450, 750);
    assert_int_equal(write_pattern("seed=7,write_eio=0%", a), 0);
    assert_int_equal(write_pattern("seed=7,write_eio=100%", a), CALLS);
    /* Draws of other kinds do not shift a kind's schedule. */
    struct io_fault *f;
    assert_int_equal(io_fault_create("seed=7,write_eio=30%,fsync_eio=50%", &f), 0);
    for (uint32_t n = 0; n < CALLS; n++) {
        size_t prefix;
        (void)io_fault_on_fsync(f);
        bool fired = io_fault_on_write(f, 4096, &prefix) != IO_FAULT_NONE;
        assert_int_equal(fired, (b[n / 8] >> (n % 8)) & 1);
    }
    io_fault_destroy(f);
    /* Probabilistic short writes keep prefix < len. */
    assert_int_equal(io_fault_create("seed=1,short_write=50%,torn_write=10%", &f), 0);
    for (uint32_t n = 0; n < CALLS; n++) {
        size_t prefix = SIZE_MAX, len = 1 + n % 300;
        enum io_fault_action act = io_fault_on_write(f, len, &prefix);
        if (act == IO_FAULT_SHORT || act == IO_FAULT_TORN_CRASH)
            assert_true(prefix < len);
    }
    io_fault_destroy(f);
}

/* ---- end to end, through the public API ---- */

static char dir[256];

static void make_dir(void)
{
    snprintf(dir, sizeof(dir), "%s/cs-test-fault-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(dir));
}

static void remove_dir(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static cs_db *open_db(const char *fault)
{
    cs_options *o = cs_options_new();
    assert_non_null(o);
    assert_int_equal(cs_options_set(o, "shards", "1"), 0);
    assert_int_equal(cs_options_set(o, "durability", "sync"), 0);
    assert_int_equal(cs_options_set(o, "fault", fault), 0);
    cs_db *db = NULL;
    int rc = cs_open(dir, o, &db);
    cs_options_free(o);
    if (rc)
        fail_msg("cs_open(%s): %s: %s", fault, cs_strerror(rc), cs_last_error());
    return db;
}

static int put_n(cs_db *db, uint32_t n)
{
    char key[16], val[32];
    snprintf(key, sizeof(key), "k%04u", n);
    snprintf(val, sizeof(val), "value-%u", n);
    return cs_put(db, "c", key, strlen(key), val, strlen(val));
}

static void check_value(cs_db *db, uint32_t n)
{
    char key[16], val[32];
    snprintf(key, sizeof(key), "k%04u", n);
    snprintf(val, sizeof(val), "value-%u", n);
    void *got = NULL;
    size_t glen = 0;
    int rc = cs_get(db, "c", key, strlen(key), &got, &glen);
    if (rc)
        fail_msg("get %s: %s", key, cs_strerror(rc));
    assert_int_equal(glen, strlen(val));
    assert_memory_equal(got, val, glen);
    cs_free(got);
}

/* Puts 1..fail-1 succeed (one frame each), put `fail` and the next ones return CS_EIO; reads
 * keep working; after reopening without faults every acknowledged put is there (and, with
 * failed_absent, none of the failed ones: nothing of theirs reached the file) and the database
 * takes writes again. Returns the torn bytes recovery reported. */
static uint64_t fail_stop_then_recover(const char *fault, uint32_t fail, bool failed_absent)
{
    make_dir();
    cs_db *db = open_db(fault);
    for (uint32_t n = 1; n < fail; n++)
        assert_int_equal(put_n(db, n), 0);
    assert_int_equal(put_n(db, fail), CS_EIO);
    for (uint32_t n = fail + 1; n < fail + 5; n++)
        assert_int_equal(put_n(db, n), CS_EIO);
    assert_int_equal(cs_del(db, "c", "k0001", 5), CS_EIO);
    for (uint32_t n = 1; n < fail; n++)
        check_value(db, n);
    struct cs_shard_stats st;
    assert_int_equal(cs_stats(db, 0, &st), 0);
    assert_int_equal(st.io_error, CS_EIO);
    int close_rc = cs_close(db); /* may report the shard's error */
    assert_true(close_rc == 0 || close_rc == CS_EIO);

    db = open_db("");
    for (uint32_t n = 1; n < fail; n++)
        check_value(db, n);
    for (uint32_t n = fail; failed_absent && n < fail + 5; n++) {
        char key[16];
        void *v = NULL;
        size_t vlen;
        snprintf(key, sizeof(key), "k%04u", n);
        assert_int_equal(cs_get(db, "c", key, strlen(key), &v, &vlen), CS_ENOTFOUND);
    }
    assert_int_equal(cs_stats(db, 0, &st), 0);
    assert_int_equal(st.io_error, 0);
    uint64_t torn = st.recovery_torn_bytes;
    assert_int_equal(put_n(db, 1000), 0);
    check_value(db, 1000);
    assert_int_equal(cs_close(db), 0);
    remove_dir();
    return torn;
}

static void test_write_eio_fails_the_frame_and_later_writes(void **state)
{
    (void)state;
    fail_stop_then_recover("seed=1,write_eio=3", 3, true);
}

static void test_fsync_eio_fails_the_frame_and_later_writes(void **state)
{
    (void)state;
    fail_stop_then_recover("seed=1,fsync_eio=2", 2, false);
}

static void test_short_write_fails_the_frame_and_later_writes(void **state)
{
    (void)state;
    fail_stop_then_recover("seed=1,short_write=2", 2, false);
}

static void test_write_enospc_fails_one_frame_and_the_db_stays_writable(void **state)
{
    (void)state;
    make_dir();
    cs_db *db = open_db("seed=1,write_enospc=2");
    assert_int_equal(put_n(db, 1), 0);
    assert_int_equal(put_n(db, 2), -ENOSPC);
    for (uint32_t n = 3; n <= 6; n++)
        assert_int_equal(put_n(db, n), 0);
    char key[16];
    void *v = NULL;
    size_t vlen;
    snprintf(key, sizeof(key), "k%04u", 2u);
    assert_int_equal(cs_get(db, "c", key, strlen(key), &v, &vlen), CS_ENOTFOUND);
    assert_int_equal(cs_close(db), 0);
    db = open_db("");
    check_value(db, 1);
    for (uint32_t n = 3; n <= 6; n++)
        check_value(db, n);
    assert_int_equal(cs_get(db, "c", key, strlen(key), &v, &vlen), CS_ENOTFOUND);
    assert_int_equal(cs_close(db), 0);
    remove_dir();
}

static void test_torn_write_kills_and_reopen_cuts_the_tail(void **state)
{
    (void)state;
    make_dir();
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        cs_options *o = cs_options_new();
        cs_db *db = NULL;
        if (!o || cs_options_set(o, "shards", "1") || cs_options_set(o, "fault", "torn_write=4") ||
            cs_open(dir, o, &db))
            _exit(2);
        for (uint32_t n = 1; n <= 10; n++)
            if (put_n(db, n))
                _exit(3);
        _exit(4); /* the 4th frame should have killed us */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    cs_db *db = open_db("");
    for (uint32_t n = 1; n <= 3; n++)
        check_value(db, n);
    struct cs_shard_stats st;
    assert_int_equal(cs_stats(db, 0, &st), 0);
    assert_true(st.recovery_torn_bytes > 0);
    char key[16];
    snprintf(key, sizeof(key), "k%04u", 4u);
    void *v = NULL;
    size_t vlen;
    assert_int_equal(cs_get(db, "c", key, strlen(key), &v, &vlen), CS_ENOTFOUND);
    assert_int_equal(cs_close(db), 0);
    remove_dir();
}

/* ---- file-operation and allocation faults ---- */

static void test_op_faults_fail_only_their_kind_at_call_n(void **state)
{
    (void)state;
    struct io_fault *f;
    assert_int_equal(io_fault_create("seed=2,rename_eio=3,dirsync_eio=1,read_eio=2", &f), 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(io_fault_on_op(f, IO_OP_RENAME), i == 2 ? -EIO : 0);
        assert_int_equal(io_fault_on_op(f, IO_OP_DIR_SYNC), i == 0 ? -EIO : 0);
        assert_int_equal(io_fault_on_op(f, IO_OP_READ), i == 1 ? -EIO : 0);
        assert_int_equal(io_fault_on_op(f, IO_OP_WRITE), 0);
        assert_int_equal(io_fault_on_op(f, IO_OP_CREATE), 0);
        assert_int_equal(io_fault_on_op(f, IO_OP_SYNC), 0);
        assert_int_equal(io_fault_on_op(f, IO_OP_UNLINK), 0);
        assert_int_equal(io_fault_on_op(f, IO_OP_LIST), 0);
    }
    io_fault_destroy(f);
}

static void *alloc_other_thread(void *arg)
{
    (void)arg;
    void *p = cs_mem_alloc(0, 64);
    cs_mem_free(p);
    return p; /* only compared with NULL */
}

static void test_alloc_fail_hits_the_installing_thread_only(void **state)
{
    (void)state;
    struct io_fault *f;
    assert_int_equal(io_fault_create("alloc_fail=2", &f), 0);
    io_fault_thread_enter(f);
    void *a = cs_mem_alloc(0, 32);
    void *b = cs_mem_alloc(0, 32); /* the 2nd */
    void *c = cs_mem_realloc(0, a, 64);
    assert_non_null(a);
    assert_null(b);
    assert_non_null(c);
    pthread_t t;
    void *other = NULL;
    assert_int_equal(pthread_create(&t, NULL, alloc_other_thread, NULL), 0);
    assert_int_equal(pthread_join(t, &other), 0);
    assert_non_null(other);
    io_fault_thread_leave(f);
    cs_mem_free(c);
    io_fault_destroy(f);
    /* 100%: every allocation fails while installed, none after */
    assert_int_equal(io_fault_create("alloc_fail=100%", &f), 0);
    io_fault_thread_enter(f);
    assert_null(cs_mem_alloc(0, 16));
    io_fault_thread_leave(f);
    void *d = cs_mem_alloc(0, 16);
    assert_non_null(d);
    cs_mem_free(d);
    io_fault_destroy(f);
}

/* ---- the power-cut journal and the cut ---- */

#define CUT_SEEDS 96u

static void path_in(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}

static struct io_fault *cut_plan(void)
{
    char spec[512];
    snprintf(spec, sizeof(spec), "powercut_log=%s/journal", dir);
    struct io_fault *f;
    assert_int_equal(io_fault_create(spec, &f), 0);
    assert_non_null(io_fault_powercut(f));
    return f;
}

static void fill(int fd, struct io_fault *f, char c, uint64_t off, size_t len)
{
    char buf[8192];
    assert_true(len <= sizeof(buf));
    memset(buf, c, len);
    assert_int_equal(io_file_pwrite(f, fd, buf, len, off), 0);
}

static struct io_powercut_report cut_now(uint64_t seed)
{
    char j[512];
    path_in(j, sizeof(j), "journal");
    struct io_powercut_report rep;
    int rc = io_powercut_apply(j, seed, &rep);
    if (rc)
        fail_msg("io_powercut_apply: %s", cs_strerror(rc));
    return rep;
}

static size_t read_file(const char *name, char *buf, size_t size)
{
    char p[512];
    path_in(p, sizeof(p), name);
    int fd = open(p, O_RDONLY);
    if (fd < 0)
        return SIZE_MAX;
    ssize_t n = read(fd, buf, size);
    close(fd);
    assert_true(n >= 0);
    return (size_t)n;
}

/* data: 'A' x 4096 written and fdatasynced (its creation made durable), then 'B' over
 * [1000, 3000) and 'C' over [4096, 6144) (extending the file), neither synced. */
static void build_synced_then_unsynced(void)
{
    make_dir();
    struct io_fault *f = cut_plan();
    char p[512];
    path_in(p, sizeof(p), "data");
    int fd = -1;
    assert_int_equal(io_file_open(f, p, O_RDWR | O_CREAT, &fd), 0);
    fill(fd, f, 'A', 0, 4096);
    assert_int_equal(io_file_sync(f, fd), 0);
    assert_int_equal(io_dir_sync(f, dir), 0);
    fill(fd, f, 'B', 1000, 2000);
    fill(fd, f, 'C', 4096, 2048);
    io_file_close(fd);
    io_fault_destroy(f);
}

/* Outcome of one write over [lo, hi) in buf: pieces at 512-byte boundaries each all-new or
 * all-old. Returns 1 kept whole, 2 torn, 3 lost; 0 when a piece is mixed or wrong. */
static int outcome(const char *buf, size_t size, uint64_t lo, uint64_t hi, char new_c, char old_c)
{
    unsigned kept = 0, lost = 0;
    for (uint64_t at = lo; at < hi;) {
        uint64_t end = (at / 512 + 1) * 512 < hi ? (at / 512 + 1) * 512 : hi;
        unsigned news = 0, olds = 0;
        for (uint64_t i = at; i < end; i++) {
            char c = i < size ? buf[i] : old_c;
            news += c == new_c;
            olds += c == old_c;
        }
        if (news == end - at)
            kept++;
        else if (olds == end - at)
            lost++;
        else
            return 0;
        at = end;
    }
    return lost == 0 ? 1 : kept == 0 ? 3 : 2;
}

static void test_powercut_keeps_synced_bytes_and_cuts_unsynced_ones(void **state)
{
    (void)state;
    unsigned seen_b[4] = {0}, seen_c[4] = {0};
    for (uint64_t seed = 1; seed <= CUT_SEEDS; seed++) {
        build_synced_then_unsynced();
        struct io_powercut_report rep = cut_now(seed);
        assert_int_equal(rep.writes_durable, 1);
        assert_int_equal(rep.writes_kept + rep.writes_torn + rep.writes_lost, 2);
        char buf[8192];
        size_t n = read_file("data", buf, sizeof(buf));
        /* synced bytes: always there, whatever the seed */
        assert_true(n >= 4096 && n <= 6144);
        for (size_t i = 0; i < 4096; i++)
            if (i < 1000 || i >= 3000)
                assert_int_equal(buf[i], 'A');
        int b = outcome(buf, n, 1000, 3000, 'B', 'A');
        if (b == 0)
            fail_msg("seed %" PRIu64 ": write B is neither whole, torn at sectors nor lost", seed);
        /* C extended the file: lost sectors read as zeros, or the file ends before them */
        char c_buf[6144];
        memcpy(c_buf, buf, n);
        memset(c_buf + n, 0, sizeof(c_buf) - n);
        int c = outcome(c_buf, sizeof(c_buf), 4096, 6144, 'C', '\0');
        if (c == 0)
            fail_msg("seed %" PRIu64 ": write C is neither whole, torn at sectors nor lost", seed);
        if (n > 4096)
            assert_int_equal(buf[n - 1], 'C'); /* cut back to the last kept sector */
        seen_b[b]++;
        seen_c[c]++;
        remove_dir();
    }
    for (int k = 1; k <= 3; k++) {
        assert_true(seen_b[k] > 0);
        assert_true(seen_c[k] > 0);
    }
}

static void test_powercut_dsync_range_survives_and_inflight_ring_write_is_not_synced(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= CUT_SEEDS / 2; seed++) {
        make_dir();
        struct io_fault *f = cut_plan();
        struct io_powercut *cut = io_fault_powercut(f);
        char p[512];
        path_in(p, sizeof(p), "wal");
        int fd = -1;
        assert_int_equal(io_file_open(f, p, O_RDWR | O_CREAT, &fd), 0);
        assert_int_equal(io_dir_sync(f, dir), 0);
        assert_int_equal(ftruncate(fd, 4096), 0); /* "preallocated": zeros, durable */
        char x[512];
        /* X: a plain ring write, completed, never synced */
        memset(x, 'X', sizeof(x));
        uint64_t sx = io_powercut_write(cut, fd, 0, 512, IO_CUT_RING);
        assert_int_equal(pwrite(fd, x, 512, 0), 512);
        io_powercut_completed(cut, sx);
        /* Y: RWF_DSYNC, completed: durable for [512, 1024) only */
        memset(x, 'Y', sizeof(x));
        uint64_t sy = io_powercut_write(cut, fd, 512, 512, IO_CUT_RING | IO_CUT_DSYNC);
        assert_int_equal(pwrite(fd, x, 512, 512), 512);
        io_powercut_completed(cut, sy);
        /* Z: a plain ring write still in flight when an fdatasync starts and succeeds */
        memset(x, 'Z', sizeof(x));
        uint64_t sz = io_powercut_write(cut, fd, 1024, 512, IO_CUT_RING);
        uint64_t mark = io_powercut_mark(cut);
        assert_int_equal(pwrite(fd, x, 512, 1024), 512);
        io_powercut_completed(cut, sz);
        io_powercut_synced(cut, io_powercut_ino(fd), mark);
        io_file_close(fd);
        io_fault_destroy(f);
        struct io_powercut_report rep = cut_now(seed);
        assert_int_equal(rep.writes_durable, 2); /* Y, and X: completed before the mark */
        char buf[4096];
        assert_int_equal(read_file("wal", buf, sizeof(buf)), 4096);
        for (int i = 0; i < 512; i++) {
            assert_int_equal(buf[i], 'X');
            assert_int_equal(buf[512 + i], 'Y');
            assert_true(buf[1024 + i] == 'Z' || buf[1024 + i] == '\0');
        }
        remove_dir();
    }
}

/* old (synced, durable) and gone (durable); then new written + synced and renamed over old,
 * gone removed, tmp created; with dir_synced, the folder is fsynced at the end. */
static void build_metadata(bool dir_synced)
{
    make_dir();
    struct io_fault *f = cut_plan();
    char p_old[512], p_new[512], p_gone[512], p_tmp[512];
    path_in(p_old, sizeof(p_old), "old");
    path_in(p_new, sizeof(p_new), "new");
    path_in(p_gone, sizeof(p_gone), "gone");
    path_in(p_tmp, sizeof(p_tmp), "tmp");
    int fd = -1;
    assert_int_equal(io_file_open(f, p_old, O_RDWR | O_CREAT, &fd), 0);
    fill(fd, f, 'o', 0, 100);
    assert_int_equal(io_file_sync(f, fd), 0);
    io_file_close(fd);
    assert_int_equal(io_file_open(f, p_gone, O_RDWR | O_CREAT, &fd), 0);
    fill(fd, f, 'g', 0, 100);
    assert_int_equal(io_file_sync(f, fd), 0);
    io_file_close(fd);
    assert_int_equal(io_dir_sync(f, dir), 0);
    assert_int_equal(io_file_open(f, p_new, O_RDWR | O_CREAT, &fd), 0);
    fill(fd, f, 'n', 0, 200);
    assert_int_equal(io_file_sync(f, fd), 0);
    io_file_close(fd);
    assert_int_equal(io_file_rename(f, p_new, p_old), 0);
    assert_int_equal(io_file_unlink(f, p_gone), 0);
    assert_int_equal(io_file_open(f, p_tmp, O_RDWR | O_CREAT, &fd), 0);
    io_file_close(fd);
    if (dir_synced)
        assert_int_equal(io_dir_sync(f, dir), 0);
    io_fault_destroy(f);
}

static void test_powercut_undoes_unsynced_creates_renames_and_unlinks(void **state)
{
    (void)state;
    char buf[512];
    for (uint64_t seed = 1; seed <= 4; seed++) {
        build_metadata(false);
        struct io_powercut_report rep = cut_now(seed);
        assert_int_equal(rep.meta_undone, 4); /* new's creation, the rename, the unlink, tmp */
        assert_int_equal(read_file("old", buf, sizeof(buf)), 100);
        assert_int_equal(buf[0], 'o');
        assert_int_equal(read_file("gone", buf, sizeof(buf)), 100);
        assert_int_equal(buf[99], 'g');
        assert_int_equal(read_file("new", buf, sizeof(buf)), SIZE_MAX);
        assert_int_equal(read_file("tmp", buf, sizeof(buf)), SIZE_MAX);
        remove_dir();
    }
    build_metadata(true);
    struct io_powercut_report rep = cut_now(1);
    assert_int_equal(rep.meta_undone, 0);
    assert_int_equal(read_file("old", buf, sizeof(buf)), 200);
    assert_int_equal(buf[199], 'n');
    assert_int_equal(read_file("gone", buf, sizeof(buf)), SIZE_MAX);
    assert_int_equal(read_file("new", buf, sizeof(buf)), SIZE_MAX);
    assert_int_equal(read_file("tmp", buf, sizeof(buf)), 0);
    remove_dir();
}

static void test_powercut_journal_stays_small(void **state)
{
    (void)state;
    make_dir();
    struct io_fault *f = cut_plan();
    char p[512], j[512];
    path_in(p, sizeof(p), "data");
    path_in(j, sizeof(j), "journal");
    int fd = -1;
    assert_int_equal(io_file_open(f, p, O_RDWR | O_CREAT, &fd), 0);
    assert_int_equal(io_dir_sync(f, dir), 0);
    struct io_powercut *cut = io_fault_powercut(f);
    for (uint32_t i = 0; i < 20000; i++) { /* 20000 x (512 old bytes + records): ~12 MiB */
        fill(fd, f, (char)('a' + i % 26), (uint64_t)(i % 64) * 512, 512);
        /* what io_file_sync journals, without 20000 real fdatasyncs */
        io_powercut_synced(cut, io_powercut_ino(fd), io_powercut_mark(cut));
    }
    fill(fd, f, '!', 0, 512); /* the last write, not synced */
    struct stat st;
    assert_int_equal(stat(j, &st), 0);
    assert_true(st.st_size < (2 << 20));
    io_file_close(fd);
    io_fault_destroy(f);
    /* the cut still knows the last write, and only it */
    struct io_powercut_report rep = cut_now(7);
    assert_int_equal(rep.writes_kept + rep.writes_torn + rep.writes_lost, 1);
    remove_dir();
}

/* The child puts (sync mode) and reports each acknowledged n on a pipe until the power cut at
 * its Nth disk operation kills it; after the cut every acknowledged put is there. */
static void test_powercut_kill_then_cut_loses_no_acknowledged_put(void **state)
{
    (void)state;
    for (uint32_t nth = 5; nth <= 45; nth += 8) {
        make_dir();
        char spec[512];
        snprintf(spec, sizeof(spec), "seed=%u,powercut=%u,powercut_log=%s/journal", nth, nth, dir);
        char db_dir[512];
        path_in(db_dir, sizeof(db_dir), "db");
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            cs_options *o = cs_options_new();
            cs_db *db = NULL;
            if (!o || cs_options_set(o, "shards", "1") || cs_options_set(o, "fault", spec) ||
                cs_options_set(o, "checkpoint_wal_bytes", "16K") || cs_open(db_dir, o, &db))
                _exit(2);
            for (uint32_t n = 1; n <= 5000; n++) {
                if (put_n(db, n))
                    _exit(3);
                if (write(fds[1], &n, sizeof(n)) != sizeof(n))
                    _exit(5);
                if (n % 50 == 0 && cs_checkpoint(db))
                    _exit(6);
            }
            _exit(4); /* the cut should have come first */
        }
        close(fds[1]);
        uint32_t acked = 0, n;
        while (read(fds[0], &n, sizeof(n)) == sizeof(n))
            acked = n;
        close(fds[0]);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
            fail_msg("powercut=%u: the child was not killed (status %#x)", nth, status);
        (void)cut_now(nth);
        cs_options *o = cs_options_new();
        assert_non_null(o);
        assert_int_equal(cs_options_set(o, "shards", "1"), 0);
        cs_db *db = NULL;
        int rc = cs_open(db_dir, o, &db);
        cs_options_free(o);
        if (rc)
            fail_msg("powercut=%u: open after the cut: %s: %s", nth, cs_strerror(rc),
                     cs_last_error());
        for (uint32_t k = 1; k <= acked; k++)
            check_value(db, k);
        assert_int_equal(cs_close(db), 0);
        remove_dir();
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parser_accepts_documented_specs),
        cmocka_unit_test(test_parser_rejects_malformed_specs),
        cmocka_unit_test(test_nth_call_triggers_fire_exactly_once),
        cmocka_unit_test(test_probabilities_are_reproducible_for_a_seed),
        cmocka_unit_test(test_write_eio_fails_the_frame_and_later_writes),
        cmocka_unit_test(test_fsync_eio_fails_the_frame_and_later_writes),
        cmocka_unit_test(test_short_write_fails_the_frame_and_later_writes),
        cmocka_unit_test(test_write_enospc_fails_one_frame_and_the_db_stays_writable),
        cmocka_unit_test(test_torn_write_kills_and_reopen_cuts_the_tail),
        cmocka_unit_test(test_op_faults_fail_only_their_kind_at_call_n),
        cmocka_unit_test(test_alloc_fail_hits_the_installing_thread_only),
        cmocka_unit_test(test_powercut_keeps_synced_bytes_and_cuts_unsynced_ones),
        cmocka_unit_test(test_powercut_dsync_range_survives_and_inflight_ring_write_is_not_synced),
        cmocka_unit_test(test_powercut_undoes_unsynced_creates_renames_and_unlinks),
        cmocka_unit_test(test_powercut_journal_stays_small),
        cmocka_unit_test(test_powercut_kill_then_cut_loses_no_acknowledged_put),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
