/* Unit tests of the io_uring wrapper (io/ring.c) on a temporary file: a write completes with its
 * tag and byte count and its bytes are in the file; with a fault plan an injected write error
 * comes back as a synthetic completion with the same tag (and writes nothing), an injected
 * fdatasync error rewrites the real completion; a timeout and an eventfd read complete with
 * their tags. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cstore.h"
#include "io/fault.h"
#include "io/ring.h"
#include "tests/test_util.h"

#define LEN 4096

struct fx {
    char dir[CST_PATH_MAX];
    char path[CST_PATH_MAX + 16];
    int fd;
    struct io_fault *fault;
    struct io_ring ring;
    char buf[LEN];
};

static struct fx *fx_new(const char *fault)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    cst_tmpdir_make(f->dir, sizeof(f->dir), "ring");
    snprintf(f->path, sizeof(f->path), "%s/file", f->dir);
    f->fd = open(f->path, O_RDWR | O_CREAT, 0644);
    assert_true(f->fd >= 0);
    if (fault)
        assert_int_equal(io_fault_create(fault, &f->fault), 0);
    assert_int_equal(io_ring_init(&f->ring, f->fault), 0);
    memset(f->buf, 'w', LEN);
    return f;
}

static void fx_free(struct fx *f)
{
    io_ring_exit(&f->ring);
    io_fault_destroy(f->fault);
    close(f->fd);
    assert_int_equal(cst_tmpdir_remove(f->dir), 0);
    free(f);
}

/* Wait for the next completion (an interrupted wait returns none: wait again). */
static struct io_event next_event(struct fx *f)
{
    struct io_event ev;
    int n;
    while ((n = io_ring_run(&f->ring, 1, &ev, 1)) == 0)
        ;
    assert_int_equal(n, 1);
    return ev;
}

static off_t file_size(struct fx *f)
{
    struct stat st;
    assert_int_equal(fstat(f->fd, &st), 0);
    return st.st_size;
}

static void test_write_completes_with_its_tag_and_its_bytes_are_in_the_file(void **state)
{
    (void)state;
    struct fx *f = fx_new(NULL);
    for (int sync = 0; sync < 2; sync++) {
        memset(f->buf, 'a' + sync, LEN);
        assert_int_equal(io_ring_write(&f->ring, f->fd, f->buf, LEN, (uint64_t)sync * LEN, 0, LEN,
                                       sync, 100 + (uint64_t)sync),
                         0);
        struct io_event ev = next_event(f);
        assert_int_equal(ev.tag, 100 + sync);
        assert_int_equal(ev.res, LEN);
        char back[LEN];
        assert_int_equal(pread(f->fd, back, LEN, (off_t)sync * LEN), LEN);
        assert_memory_equal(back, f->buf, LEN);
    }
    fx_free(f);
}

static void test_injected_write_errors_come_back_as_synthetic_completions_with_the_tag(void **state)
{
    (void)state;
    const char *specs[] = {"write_eio=1", "write_enospc=1"};
    const int want[] = {-EIO, -ENOSPC};
    for (int i = 0; i < 2; i++) {
        struct fx *f = fx_new(specs[i]);
        assert_int_equal(io_ring_write(&f->ring, f->fd, f->buf, LEN, 0, 0, LEN, true, 7), 0);
        struct io_event ev = next_event(f);
        assert_int_equal(ev.tag, 7);
        assert_int_equal(ev.res, want[i]);
        assert_int_equal(file_size(f), 0); /* nothing was written */
        /* the fault fired once: the next write really happens */
        assert_int_equal(io_ring_write(&f->ring, f->fd, f->buf, LEN, 0, 0, LEN, true, 8), 0);
        ev = next_event(f);
        assert_int_equal(ev.tag, 8);
        assert_int_equal(ev.res, LEN);
        assert_int_equal(file_size(f), LEN);
        fx_free(f);
    }
}

static void test_injected_fdatasync_error_rewrites_the_completion_of_a_sync_write(void **state)
{
    (void)state;
    struct fx *f = fx_new("fsync_eio=1");
    assert_int_equal(io_ring_write(&f->ring, f->fd, f->buf, LEN, 0, 0, LEN, true, 11), 0);
    struct io_event ev = next_event(f);
    assert_int_equal(ev.tag, 11);
    assert_int_equal(ev.res, -EIO);
    assert_int_equal(file_size(f), LEN); /* the write itself ran */
    /* a lone fdatasync is not failed again */
    assert_int_equal(io_ring_fsync(&f->ring, f->fd, 12), 0);
    ev = next_event(f);
    assert_int_equal(ev.tag, 12);
    assert_int_equal(ev.res, 0);
    fx_free(f);
}

static void test_timeout_fires_with_its_tag(void **state)
{
    (void)state;
    struct fx *f = fx_new(NULL);
    struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 1000000};
    assert_int_equal(io_ring_timeout(&f->ring, &ts, 9), 0);
    struct io_event ev = next_event(f);
    assert_int_equal(ev.tag, 9);
    assert_int_equal(ev.res, -ETIME);
    fx_free(f);
}

static void test_eventfd_read_completes_with_its_tag_and_the_count(void **state)
{
    (void)state;
    struct fx *f = fx_new(NULL);
    int efd = eventfd(0, EFD_CLOEXEC);
    assert_true(efd >= 0);
    uint64_t got = 0, one = 3;
    assert_int_equal(io_ring_read8(&f->ring, efd, &got, 5), 0);
    assert_int_equal(write(efd, &one, sizeof(one)), sizeof(one));
    struct io_event ev = next_event(f);
    assert_int_equal(ev.tag, 5);
    assert_int_equal(ev.res, 8);
    assert_int_equal(got, 3);
    close(efd);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_completes_with_its_tag_and_its_bytes_are_in_the_file),
        cmocka_unit_test(
            test_injected_write_errors_come_back_as_synthetic_completions_with_the_tag),
        cmocka_unit_test(test_injected_fdatasync_error_rewrites_the_completion_of_a_sync_write),
        cmocka_unit_test(test_timeout_fires_with_its_tag),
        cmocka_unit_test(test_eventfd_read_completes_with_its_tag_and_the_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
