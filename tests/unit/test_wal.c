/* Unit tests of the WAL module: frames written through wal_seal() are replayed in order by
 * wal_open(); compression round-trips; segments rotate; a torn tail is cut and reported; damage
 * anywhere else is CS_ECORRUPT naming file and offset; malformed records are rejected; writes
 * are whole blocks that zero ahead of the log's end. The writes here are plain pwrite +
 * fdatasync standing in for the shard's io_uring submission. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cstore.h"
#include "io/file.h"
#include "shards/wal.h"

#define RECS_MAX 20000

struct seen {
    uint64_t lsn[RECS_MAX]; /* LSNs in replay order */
    uint8_t type[RECS_MAX]; /* record types */
    uint32_t key[RECS_MAX]; /* first 4 key bytes as an integer */
    size_t vlen[RECS_MAX];  /* value lengths */
    size_t count;           /* records seen */
};

static struct seen seen;

static int collect(void *arg, uint64_t lsn, const struct wal_rec *rec)
{
    (void)arg;
    assert_true(seen.count < RECS_MAX);
    seen.lsn[seen.count] = lsn;
    seen.type[seen.count] = rec->type;
    uint32_t k = 0;
    memcpy(&k, rec->key, rec->klen < 4 ? rec->klen : 4);
    seen.key[seen.count] = k;
    seen.vlen[seen.count] = rec->vlen;
    seen.count++;
    return 0;
}

static char dir[256];

static void make_dir(void)
{
    snprintf(dir, sizeof(dir), "%s/cs-test-wal-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(dir));
}

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.')
            unlinkat(dirfd(d), e->d_name, 0);
    if (d)
        closedir(d);
    rmdir(dir);
}

static struct wal_config config(uint64_t segment_bytes, uint32_t compress)
{
    struct wal_config c = {.dir = dir,
                           .shard = 0,
                           .arena = 0,
                           .segment_bytes = segment_bytes,
                           .compress_bytes = compress};
    return c;
}

static void open_log(struct wal *w, const struct wal_config *c, int expect_rc,
                     struct wal_recovery *info)
{
    memset(&seen, 0, sizeof(seen));
    int rc = wal_open(w, c, collect, NULL, info);
    if (rc != expect_rc)
        fail_msg("wal_open returned %d (%s), expected %d: %s", rc, cs_strerror(rc), expect_rc,
                 info->message);
}

/* Append n puts of value size vlen (key = index), one frame per `per_frame` records. */
static void write_puts(struct wal *w, uint32_t first, uint32_t n, size_t vlen, uint32_t per_frame)
{
    static uint8_t val[CS_VALUE_MAX];
    memset(val, 'v', sizeof(val));
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k = first + i;
        struct wal_rec rec = {
            .type = WAL_PUT, .coll = 1, .key = &k, .klen = 4, .val = val, .vlen = vlen};
        assert_int_equal(wal_reserve(w, wal_rec_bytes(&rec)), 0);
        uint64_t lsn = wal_append(w, &rec);
        assert_int_equal(lsn, (uint64_t)k + 1);
        if ((i + 1) % per_frame == 0 || i + 1 == n) {
            struct wal_io io;
            assert_int_equal(wal_seal(w, &io), 0);
            assert_int_equal(io.last_lsn, lsn);
            assert_int_equal(io_file_pwrite(io.fd, io.buf, io.len, io.off), 0);
            assert_int_equal(io_file_sync(io.fd), 0);
            wal_io_done(w);
        }
    }
}

static void check_seen(uint32_t n)
{
    assert_int_equal(seen.count, n);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(seen.lsn[i], i + 1);
        assert_int_equal(seen.key[i], i);
        assert_int_equal(seen.type[i], WAL_PUT);
    }
}

static char *segment_path(int index)
{
    static char path[512];
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort);
    int k = 0;
    path[0] = 0;
    for (int i = 0; i < n; i++) {
        if (strncmp(list[i]->d_name, "wal-", 4) == 0 && k++ == index)
            snprintf(path, sizeof(path), "%s/%s", dir, list[i]->d_name);
        free(list[i]);
    }
    free(list);
    return path;
}

static void flip_byte(const char *path, uint64_t off)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

static void test_replay_returns_every_record_in_lsn_order(void **state)
{
    (void)state;
    make_dir();
    struct wal w;
    struct wal_recovery info;
    struct wal_config c = config(1 << 20, 0);
    open_log(&w, &c, 0, &info);
    assert_int_equal(seen.count, 0);
    write_puts(&w, 0, 1000, 10, 7);
    wal_close(&w);
    open_log(&w, &c, 0, &info);
    check_seen(1000);
    assert_int_equal(info.torn_bytes, 0);
    /* appends continue after the replayed log */
    write_puts(&w, 1000, 10, 10, 3);
    wal_close(&w);
    open_log(&w, &c, 0, &info);
    check_seen(1010);
    wal_close(&w);
    remove_dir();
}

static void test_compressed_frames_round_trip(void **state)
{
    (void)state;
    make_dir();
    struct wal w;
    struct wal_recovery info;
    struct wal_config c = config(4 << 20, 64);
    open_log(&w, &c, 0, &info);
    write_puts(&w, 0, 500, 300, 50);
    uint64_t end = w.seg_off;
    wal_close(&w);
    /* 500 values of 300 identical bytes compress far below their raw size */
    assert_true(end < 500 * 300 / 4);
    open_log(&w, &c, 0, &info);
    check_seen(500);
    for (int i = 0; i < 500; i++)
        assert_int_equal(seen.vlen[i], 300);
    wal_close(&w);
    remove_dir();
}

static void test_segments_rotate_and_replay_across_files(void **state)
{
    (void)state;
    make_dir();
    struct wal w;
    struct wal_recovery info;
    struct wal_config c = config(1 << 20, 0);
    open_log(&w, &c, 0, &info);
    write_puts(&w, 0, 300, 20000, 10); /* ~6 MB over 1 MiB segments */
    assert_true(w.segments >= 5);
    wal_close(&w);
    open_log(&w, &c, 0, &info);
    check_seen(300);
    wal_close(&w);
    remove_dir();
}

static void test_odd_segment_size_rounds_up_to_whole_blocks(void **state)
{
    (void)state;
    make_dir();
    struct wal w;
    struct wal_recovery info;
    struct wal_config c = config((1 << 20) + 1000, 0);
    open_log(&w, &c, 0, &info);
    assert_int_equal(w.seg_size % WAL_IO_ALIGN, 0);
    write_puts(&w, 0, 300, 10000, 10); /* ~3 MB: rotates */
    assert_true(w.segments >= 2);
    assert_int_equal(w.seg_size % WAL_IO_ALIGN, 0);
    wal_close(&w);
    open_log(&w, &c, 0, &info);
    check_seen(300);
    wal_close(&w);
    remove_dir();
}

static void test_torn_tail_is_cut_and_reported(void **state)
{
    (void)state;
    make_dir();
    struct wal w;
    struct wal_recovery info;
    struct wal_config c = config(1 << 20, 0);
    open_log(&w, &c, 0, &info);
    write_puts(&w, 0, 100, 100, 10);
    uint64_t good_end = w.seg_off;
    /* a last frame of which only a prefix reached the file */
    uint32_t k = 100;
    uint8_t val[500];
    memset(val, 'x', sizeof(val));
    struct wal_rec rec = {
        .type = WAL_PUT, .coll = 1, .key = &k, .klen = 4, .val = val, .vlen = sizeof(val)};
    assert_int_equal(wal_reserve(&w, wal_rec_bytes(&rec)), 0);
    wal_append(&w, &rec);
    struct wal_io io;
    assert_int_equal(wal_seal(&w, &io), 0);
    /* the block's earlier bytes and half the frame: through the page cache, which takes any
     * byte count (the log's writes are direct and whole blocks) */
    int flags = fcntl(io.fd, F_GETFL);
    assert_int_equal(fcntl(io.fd, F_SETFL, flags & ~O_DIRECT), 0);
    assert_true(io.frame_at + io.frame_bytes <= io.len);
    size_t torn = io.frame_at + io.frame_bytes / 2;
    assert_int_equal(io_file_pwrite(io.fd, io.buf, torn, io.off), 0);
    wal_close(&w);
    open_log(&w, &c, 0, &info);
    check_seen(100);
    assert_true(info.torn_bytes > 0);
    assert_non_null(strstr(info.message, "torn"));
    assert_int_equal(w.seg_off, good_end);
    /* the log goes on where the valid part ended, and the cut is durable */
    write_puts(&w, 100, 5, 10, 5);
    wal_close(&w);
    open_log(&w, &c, 0, &info);
    check_seen(105);
    assert_int_equal(info.torn_bytes, 0);
    wal_close(&w);
    remove_dir();
}

static void test_damage_before_valid_frames_is_corruption(void **state)
{
    (void)state;
    make_dir();
    struct wal w;
    struct wal_recovery info;
    struct wal_config c = config(1 << 20, 0);
    open_log(&w, &c, 0, &info);
    write_puts(&w, 0, 100, 100, 10);
    wal_close(&w);
    /* a bit flip in the body of the second frame */
    flip_byte(segment_path(0), WAL_SEGMENT_HEADER_BYTES + 1200 + 300);
    open_log(&w, &c, CS_ECORRUPT, &info);
    assert_non_null(strstr(info.message, "wal-"));
    assert_non_null(strstr(info.message, "offset"));
    remove_dir();
}

static void test_damaged_frame_header_is_corruption(void **state)
{
    (void)state;
    make_dir();
    struct wal w;
    struct wal_recovery info;
    struct wal_config c = config(1 << 20, 0);
    open_log(&w, &c, 0, &info);
    write_puts(&w, 0, 50, 100, 10);
    wal_close(&w);
    /* the length field of the first frame: the header checksum must catch it */
    flip_byte(segment_path(0), WAL_SEGMENT_HEADER_BYTES + 21);
    open_log(&w, &c, CS_ECORRUPT, &info);
    assert_non_null(strstr(info.message, "offset 64"));
    remove_dir();
}

static void test_writes_are_whole_blocks_that_zero_ahead(void **state)
{
    (void)state;
    make_dir();
    struct wal w;
    struct wal_recovery info;
    struct wal_config c = config(1 << 20, 0);
    open_log(&w, &c, 0, &info);
    uint64_t frame_end = WAL_SEGMENT_HEADER_BYTES;
    for (uint32_t k = 0; k < 2000; k++) {
        struct wal_rec rec = {
            .type = WAL_PUT, .coll = 1, .key = &k, .klen = 4, .val = "0123456789", .vlen = 10};
        assert_int_equal(wal_reserve(&w, wal_rec_bytes(&rec)), 0);
        wal_append(&w, &rec);
        struct wal_io io;
        assert_int_equal(wal_seal(&w, &io), 0);
        assert_int_equal(io.off % WAL_IO_ALIGN, 0);
        assert_int_equal(io.len % WAL_IO_ALIGN, 0);
        assert_int_equal((uintptr_t)io.buf % WAL_IO_ALIGN, 0);
        assert_int_equal(io.off + io.frame_at, frame_end);
        assert_true(io.frame_at + io.frame_bytes <= io.len);
        assert_true(io.off + io.len <= w.seg_size);
        assert_int_equal(io_file_pwrite(io.fd, io.buf, io.len, io.off), 0);
        wal_io_done(&w);
        frame_end = io.off + io.frame_at + io.frame_bytes;
        /* the blocks ahead of the log's end have been written (with zeros) */
        assert_true(w.zeroed_end >= frame_end + WAL_ZERO_AHEAD_BYTES / 2);
    }
    assert_int_equal(io_file_sync(w.fd), 0);
    uint64_t zeroed = w.zeroed_end;
    wal_close(&w);
    /* the zeros ahead are data to the filesystem, and a clean open accepts them */
    int fd = open(segment_path(0), O_RDONLY);
    assert_true(fd >= 0);
    off_t data = lseek(fd, (off_t)(zeroed - WAL_IO_ALIGN), SEEK_DATA);
    assert_int_equal(data, (off_t)(zeroed - WAL_IO_ALIGN));
    close(fd);
    open_log(&w, &c, 0, &info);
    check_seen(2000);
    assert_int_equal(info.torn_bytes, 0);
    assert_int_equal(w.seg_off, frame_end);
    /* appends continue within the last partial block without disturbing what it holds */
    write_puts(&w, 2000, 3, 10, 1);
    wal_close(&w);
    open_log(&w, &c, 0, &info);
    check_seen(2003);
    wal_close(&w);
    remove_dir();
}

static void test_valid_frame_in_the_zeroed_part_after_damage_is_corruption(void **state)
{
    (void)state;
    make_dir();
    struct wal w;
    struct wal_recovery info;
    struct wal_config c = config(1 << 20, 0);
    open_log(&w, &c, 0, &info);
    write_puts(&w, 0, 100, 100, 10);
    uint64_t end = w.seg_off;
    uint64_t zeroed = w.zeroed_end;
    wal_close(&w);
    assert_true(zeroed > end + 2 * WAL_IO_ALIGN);
    /* a copy of the first frame where zeros were written ahead, then the last frame damaged:
     * a valid frame after the damage means the damage is not a torn tail */
    char path[512];
    snprintf(path, sizeof(path), "%s", segment_path(0));
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t frame[2048];
    assert_int_equal(pread(fd, frame, sizeof(frame), WAL_SEGMENT_HEADER_BYTES),
                     (ssize_t)sizeof(frame));
    uint32_t body = (uint32_t)frame[20] | (uint32_t)frame[21] << 8;
    size_t total = (WAL_FRAME_HEADER_BYTES + body + 7) & ~(size_t)7;
    assert_true(total <= sizeof(frame));
    off_t copy_at = (off_t)((zeroed - WAL_IO_ALIGN) & ~(uint64_t)(WAL_IO_ALIGN - 1));
    assert_int_equal(pwrite(fd, frame, total, copy_at), (ssize_t)total);
    close(fd);
    flip_byte(path, end - 20);
    open_log(&w, &c, CS_ECORRUPT, &info);
    assert_non_null(strstr(info.message, "before valid"));
    remove_dir();
}

static void test_damage_in_a_full_segment_is_corruption(void **state)
{
    (void)state;
    make_dir();
    struct wal w;
    struct wal_recovery info;
    struct wal_config c = config(1 << 20, 0);
    open_log(&w, &c, 0, &info);
    write_puts(&w, 0, 200, 20000, 1);
    assert_true(w.segments >= 2);
    wal_close(&w);
    /* the last frame of the first segment: nothing valid follows it in that file, but a later
     * segment exists, so it cannot be a torn tail */
    char first[512];
    snprintf(first, sizeof(first), "%s", segment_path(0));
    struct stat st;
    assert_int_equal(stat(first, &st), 0);
    uint64_t off = WAL_SEGMENT_HEADER_BYTES;
    uint64_t frame = (WAL_FRAME_HEADER_BYTES + WAL_RECORD_HEADER_BYTES + 4 + 20000 + 7) & ~7ull;
    while (off + 2 * frame <= (uint64_t)st.st_size)
        off += frame;
    flip_byte(first, off + 100);
    open_log(&w, &c, CS_ECORRUPT, &info);
    remove_dir();
}

static void test_missing_segment_is_corruption(void **state)
{
    (void)state;
    make_dir();
    struct wal w;
    struct wal_recovery info;
    struct wal_config c = config(1 << 20, 0);
    open_log(&w, &c, 0, &info);
    write_puts(&w, 0, 200, 20000, 1);
    assert_true(w.segments >= 3);
    wal_close(&w);
    assert_int_equal(unlink(segment_path(1)), 0);
    open_log(&w, &c, CS_ECORRUPT, &info);
    assert_non_null(strstr(info.message, "does not continue"));
    remove_dir();
}

static void test_record_decoder_rejects_bad_lengths_and_types(void **state)
{
    (void)state;
    uint8_t buf[64];
    struct wal_rec rec = {
        .type = WAL_PUT, .coll = 3, .key = "abc", .klen = 3, .val = "xy", .vlen = 2};
    memset(buf, 0, sizeof(buf));
    /* a valid record to start from */
    buf[0] = WAL_PUT;
    buf[2] = 3;
    buf[4] = 3;
    buf[8] = 2;
    memcpy(buf + 12, "abcxy", 5);
    size_t off = 0;
    struct wal_rec out;
    assert_int_equal(wal_rec_decode(buf, 17, &off, &out), 0);
    assert_int_equal(off, 17);
    assert_int_equal(out.klen, rec.klen);
    assert_memory_equal(out.key, "abc", 3);
    assert_memory_equal(out.val, "xy", 2);
    off = 0;
    assert_int_equal(wal_rec_decode(buf, 16, &off, &out), CS_ECORRUPT); /* truncated */
    buf[8] = 0xff;
    buf[9] = 0xff;
    buf[10] = 0xff;
    buf[11] = 0xff;
    off = 0;
    assert_int_equal(wal_rec_decode(buf, 17, &off, &out), CS_ECORRUPT); /* huge value length */
    buf[8] = 2;
    buf[9] = buf[10] = buf[11] = 0;
    buf[0] = 99;
    off = 0;
    assert_int_equal(wal_rec_decode(buf, 17, &off, &out), CS_ECORRUPT); /* unknown type */
    buf[0] = WAL_DEL;
    off = 0;
    assert_int_equal(wal_rec_decode(buf, 17, &off, &out), CS_ECORRUPT); /* delete with value */
    buf[0] = WAL_PUT;
    buf[2] = 0;
    off = 0;
    assert_int_equal(wal_rec_decode(buf, 17, &off, &out), CS_ECORRUPT); /* empty key */
}

static void test_batch_record_nests_operations_under_one_lsn(void **state)
{
    (void)state;
    make_dir();
    struct wal w;
    struct wal_recovery info;
    struct wal_config c = config(1 << 20, 0);
    open_log(&w, &c, 0, &info);
    uint32_t k1 = 1, k2 = 2;
    struct wal_rec p = {.type = WAL_PUT, .coll = 1, .key = &k1, .klen = 4, .val = "a", .vlen = 1};
    struct wal_rec d = {.type = WAL_DEL, .coll = 1, .key = &k2, .klen = 4};
    assert_int_equal(wal_reserve(&w, 3 * WAL_RECORD_HEADER_BYTES + 9), 0);
    wal_batch_begin(&w);
    wal_batch_add(&w, &p);
    wal_batch_add(&w, &d);
    uint64_t lsn = wal_batch_end(&w);
    assert_int_equal(lsn, 1);
    struct wal_io io;
    assert_int_equal(wal_seal(&w, &io), 0);
    assert_int_equal(io_file_pwrite(io.fd, io.buf, io.len, io.off), 0);
    wal_io_done(&w);
    wal_close(&w);
    open_log(&w, &c, 0, &info);
    assert_int_equal(seen.count, 1);
    assert_int_equal(seen.type[0], WAL_BATCH);
    assert_int_equal(seen.vlen[0], 2 * WAL_RECORD_HEADER_BYTES + 9);
    wal_close(&w);
    remove_dir();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_returns_every_record_in_lsn_order),
        cmocka_unit_test(test_compressed_frames_round_trip),
        cmocka_unit_test(test_segments_rotate_and_replay_across_files),
        cmocka_unit_test(test_odd_segment_size_rounds_up_to_whole_blocks),
        cmocka_unit_test(test_torn_tail_is_cut_and_reported),
        cmocka_unit_test(test_damage_before_valid_frames_is_corruption),
        cmocka_unit_test(test_damaged_frame_header_is_corruption),
        cmocka_unit_test(test_writes_are_whole_blocks_that_zero_ahead),
        cmocka_unit_test(test_valid_frame_in_the_zeroed_part_after_damage_is_corruption),
        cmocka_unit_test(test_damage_in_a_full_segment_is_corruption),
        cmocka_unit_test(test_missing_segment_is_corruption),
        cmocka_unit_test(test_record_decoder_rejects_bad_lengths_and_types),
        cmocka_unit_test(test_batch_record_nests_operations_under_one_lsn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
