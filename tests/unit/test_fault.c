/* Unit tests of the fault-injection backend (io/fault.c, applied by io/ring.c): the spec parser
 * accepts what io/fault.h documents and rejects everything else with CS_EOPTVAL; "Nth call"
 * triggers fire exactly once, at call N; probabilities are reproducible for a seed; and, through
 * the public API, a failed WAL write, a failed fdatasync, a short write and a torn write followed
 * by a crash each keep the engine's promises: the failing write and every later one return
 * CS_EIO, reads keep working, and after reopening every acknowledged put is there; a write
 * failing with ENOSPC fails its frame only, and the database stays writable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cstore.h"
#include "io/fault.h"

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
    (void)cs_close(db); /* may report the shard's error */

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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
