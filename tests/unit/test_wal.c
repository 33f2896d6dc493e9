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
#include "endian.h"
#include "shards/wal.h"

#define RECS_MAX 20000

struct seen {
    uint64_t lsn[RECS_MAX];       /* LSNs in replay order */
    uint8_t type[RECS_MAX];       /* record types */
    uint32_t key[RECS_MAX];       /* first 4 key bytes as an integer */
    size_t vlen[RECS_MAX];        /* value lengths */
    uint64_t expire_ms[RECS_MAX]; /* puts: expiries; deletes: 1 when flagged had_expiry */
    size_t count;                 /* records seen */
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
    seen.expire_ms[seen.count] = rec->type == WAL_DEL ? rec->had_expiry : rec->expire_ms;
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
    uint64_t durable = first; /* every frame is synced before the next is sealed */
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k = first + i;
        struct wal_rec rec = {
            .type = WAL_PUT, .coll = 1, .key = &k, .klen = 4, .val = val, .vlen = vlen};
        assert_int_equal(wal_reserve(w, wal_rec_bytes(&rec)), 0);
        uint64_t lsn = wal_append(w, &rec);
        assert_int_equal(lsn, (uint64_t)k + 1);
        if ((i + 1) % per_frame == 0 || i + 1 == n) {
            struct wal_io io;
            assert_int_equal(wal_seal(w, durable, &io), 0);
            assert_int_equal(io.last_lsn, lsn);
            assert_int_equal(io_file_pwrite(NULL, io.fd, io.buf, io.len, io.off), 0);
            assert_int_equal(io_file_sync(NULL, io.fd), 0);
            wal_io_done(w);
            durable = lsn;
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
    /* 500 values of 300 identical bytes compress far below their raw size: each frame of 50
     * (15,800 raw bytes, four blocks) fits one block */
    assert_int_equal(end, WAL_IO_ALIGN * 11);
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
    assert_int_equal(wal_seal(&w, 100, &io), 0);
    /* half the frame: through the page cache, which takes any byte count (the log's writes are
     * direct and whole blocks) */
    int flags = fcntl(io.fd, F_GETFL);
    assert_int_equal(fcntl(io.fd, F_SETFL, flags & ~O_DIRECT), 0);
    assert_true(io.frame_bytes <= io.len);
    size_t torn = io.frame_bytes / 2;
    assert_int_equal(io_file_pwrite(NULL, io.fd, io.buf, torn, io.off), 0);
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
    /* a bit flip in the body of the second frame (frames start fresh blocks) */
    flip_byte(segment_path(0), 2 * WAL_IO_ALIGN + 300);
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
    flip_byte(segment_path(0), WAL_IO_ALIGN + 21);
    open_log(&w, &c, CS_ECORRUPT, &info);
    assert_non_null(strstr(info.message, "offset 4096"));
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
    uint64_t frame_end = WAL_IO_ALIGN;
    for (uint32_t k = 0; k < 200; k++) {
        struct wal_rec rec = {
            .type = WAL_PUT, .coll = 1, .key = &k, .klen = 4, .val = "0123456789", .vlen = 10};
        assert_int_equal(wal_reserve(&w, wal_rec_bytes(&rec)), 0);
        wal_append(&w, &rec);
        struct wal_io io;
        assert_int_equal(wal_seal(&w, k, &io), 0);
        assert_int_equal(io.off % WAL_IO_ALIGN, 0);
        assert_int_equal(io.len % WAL_IO_ALIGN, 0);
        assert_int_equal((uintptr_t)io.buf % WAL_IO_ALIGN, 0);
        /* each frame starts a fresh block: no write covers a byte of an earlier frame */
        assert_int_equal(io.off, frame_end);
        assert_true(io.frame_bytes <= io.len);
        assert_true(io.off + io.len <= w.seg_size);
        assert_int_equal(io_file_pwrite(NULL, io.fd, io.buf, io.len, io.off), 0);
        wal_io_done(&w);
        frame_end = io.off + ((io.frame_bytes + WAL_IO_ALIGN - 1) & ~(size_t)(WAL_IO_ALIGN - 1));
        /* the blocks ahead of the log's end have been written (with zeros) */
        assert_true(w.zeroed_end >= frame_end + WAL_ZERO_AHEAD_BYTES / 2);
    }
    assert_int_equal(io_file_sync(NULL, w.fd), 0);
    uint64_t zeroed = w.zeroed_end;
    wal_close(&w);
    /* the zeros ahead are data to the filesystem, and a clean open accepts them */
    int fd = open(segment_path(0), O_RDONLY);
    assert_true(fd >= 0);
    off_t data = lseek(fd, (off_t)(zeroed - WAL_IO_ALIGN), SEEK_DATA);
    assert_int_equal(data, (off_t)(zeroed - WAL_IO_ALIGN));
    close(fd);
    open_log(&w, &c, 0, &info);
    check_seen(200);
    assert_int_equal(info.torn_bytes, 0);
    assert_int_equal(w.seg_off, frame_end);
    /* appends continue after the last frame's block */
    write_puts(&w, 200, 3, 10, 1);
    wal_close(&w);
    open_log(&w, &c, 0, &info);
    check_seen(203);
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
    assert_int_equal(pread(fd, frame, sizeof(frame), WAL_IO_ALIGN), (ssize_t)sizeof(frame));
    uint32_t body = (uint32_t)frame[20] | (uint32_t)frame[21] << 8;
    size_t total = WAL_FRAME_HEADER_BYTES + body;
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
    uint64_t off = WAL_IO_ALIGN;
    uint64_t frame =
        (WAL_FRAME_HEADER_BYTES + WAL_RECORD_HEADER_BYTES + 4 + 20000 + WAL_IO_ALIGN - 1) &
        ~(uint64_t)(WAL_IO_ALIGN - 1);
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

static uint64_t write_frame(struct wal *w, uint64_t durable);

/* Byte 1 of a record is its flags: bit 0, an expiry before the value (puts); bit 1, a delete of
 * a record that had one. Records with flags round-trip through a frame and recovery, nested in a
 * batch too; a flag on the wrong type, an expiry of 0, an unknown bit, or a record cut inside
 * its expiry are CS_ECORRUPT. */
static void test_record_flags_carry_expiry_and_round_trip(void **state)
{
    (void)state;
    uint8_t buf[64];
    memset(buf, 0, sizeof(buf));
    buf[0] = WAL_PUT;
    buf[1] = WAL_REC_EXPIRY;
    buf[2] = 3;
    buf[4] = 3;
    buf[8] = 2;
    memcpy(buf + 12, "abc", 3);
    cs_put_le64(buf + 15, 1700000000123ull);
    memcpy(buf + 23, "xy", 2);
    size_t off = 0;
    struct wal_rec out;
    assert_int_equal(wal_rec_decode(buf, 25, &off, &out), 0);
    assert_int_equal(off, 25);
    assert_int_equal(out.expire_ms, 1700000000123ull);
    assert_int_equal(out.vlen, 2);
    assert_memory_equal(out.val, "xy", 2);
    off = 0;
    assert_int_equal(wal_rec_decode(buf, 24, &off, &out), CS_ECORRUPT); /* cut */
    off = 0;
    assert_int_equal(wal_rec_decode(buf, 16, &off, &out), CS_ECORRUPT); /* cut in the expiry */
    buf[1] = WAL_REC_EXPIRY | 0x04;
    off = 0;
    assert_int_equal(wal_rec_decode(buf, 25, &off, &out), CS_ECORRUPT); /* unknown bit */
    buf[1] = WAL_REC_HAD_EXPIRY;
    off = 0;
    assert_int_equal(wal_rec_decode(buf, 25, &off, &out), CS_ECORRUPT); /* a put that "had" */
    buf[1] = WAL_REC_EXPIRY;
    memset(buf + 15, 0, 8);
    off = 0;
    assert_int_equal(wal_rec_decode(buf, 25, &off, &out), CS_ECORRUPT); /* expiry 0 */
    uint8_t del[16] = {WAL_DEL, WAL_REC_EXPIRY, 3, 0, 3, 0, 0, 0, 0, 0, 0, 0, 'a', 'b', 'c'};
    off = 0;
    assert_int_equal(wal_rec_decode(del, 15, &off, &out), CS_ECORRUPT); /* a delete's expiry */
    del[1] = WAL_REC_HAD_EXPIRY;
    off = 0;
    assert_int_equal(wal_rec_decode(del, 15, &off, &out), 0);
    assert_true(out.had_expiry);
    assert_int_equal(out.expire_ms, 0);

    make_dir();
    struct wal w;
    struct wal_recovery info;
    struct wal_config c = config(1 << 20, 0);
    open_log(&w, &c, 0, &info);
    uint32_t k1 = 1, k2 = 2, k3 = 3;
    struct wal_rec p = {.type = WAL_PUT,
                        .coll = 1,
                        .key = &k1,
                        .klen = 4,
                        .val = "a",
                        .vlen = 1,
                        .expire_ms = 1234567};
    struct wal_rec d = {.type = WAL_DEL, .coll = 1, .key = &k2, .klen = 4, .had_expiry = true};
    struct wal_rec q = {.type = WAL_PUT, .coll = 1, .key = &k3, .klen = 4, .val = "b", .vlen = 1};
    assert_int_equal(wal_rec_bytes(&p), WAL_RECORD_HEADER_BYTES + 4 + 8 + 1);
    assert_int_equal(wal_reserve(&w, 3 * wal_rec_bytes(&p) + wal_rec_bytes(&d)), 0);
    wal_append(&w, &p);
    wal_append(&w, &d);
    wal_batch_begin(&w);
    wal_batch_add(&w, &p);
    wal_batch_add(&w, &q);
    wal_batch_end(&w);
    write_frame(&w, 0);
    wal_close(&w);
    open_log(&w, &c, 0, &info);
    assert_int_equal(seen.count, 3);
    assert_int_equal(seen.expire_ms[0], 1234567);
    assert_int_equal(seen.vlen[0], 1);
    assert_int_equal(seen.type[1], WAL_DEL);
    assert_int_equal(seen.expire_ms[1], 1);
    assert_int_equal(seen.type[2], WAL_BATCH);
    assert_int_equal(seen.vlen[2], wal_rec_bytes(&p) + wal_rec_bytes(&q));
    wal_close(&w);
    remove_dir();
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
    assert_int_equal(wal_seal(&w, 0, &io), 0);
    assert_int_equal(io_file_pwrite(NULL, io.fd, io.buf, io.len, io.off), 0);
    wal_io_done(&w);
    wal_close(&w);
    open_log(&w, &c, 0, &info);
    assert_int_equal(seen.count, 1);
    assert_int_equal(seen.type[0], WAL_BATCH);
    assert_int_equal(seen.vlen[0], 2 * WAL_RECORD_HEADER_BYTES + 9);
    wal_close(&w);
    remove_dir();
}

/* Seal and write the open frame whole, saying durable was durable; returns its offset. */
static uint64_t write_frame(struct wal *w, uint64_t durable)
{
    struct wal_io io;
    assert_int_equal(wal_seal(w, durable, &io), 0);
    assert_int_equal(io_file_pwrite(NULL, io.fd, io.buf, io.len, io.off), 0);
    wal_io_done(w);
    return io.off;
}

static void append_put(struct wal *w, uint32_t k, const void *val, size_t vlen)
{
    struct wal_rec rec = {
        .type = WAL_PUT, .coll = 1, .key = &k, .klen = 4, .val = val, .vlen = vlen};
    assert_int_equal(wal_reserve(w, wal_rec_bytes(&rec)), 0);
    assert_int_equal(wal_append(w, &rec), (uint64_t)k + 1);
}

static void zero_block(const char *path, uint64_t off)
{
    static const uint8_t zeros[WAL_IO_ALIGN];
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, zeros, sizeof(zeros), (off_t)off), (ssize_t)sizeof(zeros));
    close(fd);
}

/* Damage confined to frames a checkpoint holds costs nothing: the log opens, the records after
 * the checkpoint are all there, and appends after a cut at or below the checkpoint never leave
 * an LSN gap (the next open must not fail "out of LSN sequence"). */
static void test_damage_the_checkpoint_covers_costs_nothing(void **state)
{
    (void)state;
    make_dir();
    struct wal w;
    struct wal_recovery info;
    struct wal_config c = config(1 << 20, 0);
    open_log(&w, &c, 0, &info);
    write_puts(&w, 0, 100, 10, 10); /* frames of LSNs 1-10, ..., 91-100 */
    wal_close(&w);
    char path[512];
    snprintf(path, sizeof(path), "%s", segment_path(0));
    /* a damaged header in the middle (LSNs 31-40), under a checkpoint at LSN 50: the frames
     * after it replay */
    flip_byte(path, 4 * WAL_IO_ALIGN + 20);
    c.base_lsn = 50;
    open_log(&w, &c, 0, &info);
    assert_int_equal(seen.count, 50);
    assert_int_equal(seen.lsn[0], 51);
    assert_int_equal(seen.lsn[49], 100);
    assert_true(info.skipped_bytes > 0);
    wal_close(&w);
    /* the same damage under a checkpoint before it is corruption */
    c.base_lsn = 10;
    open_log(&w, &c, CS_ECORRUPT, &info);
    /* the last frame (LSNs 91-100) damaged too, all of it under a checkpoint at LSN 100 */
    flip_byte(path, 10 * WAL_IO_ALIGN + 100);
    c.base_lsn = 100;
    open_log(&w, &c, 0, &info);
    assert_int_equal(seen.count, 0);
    assert_int_equal(w.next_lsn, 101);
    write_puts(&w, 100, 20, 10, 4);
    wal_close(&w);
    open_log(&w, &c, 0, &info);
    assert_int_equal(seen.count, 20);
    for (uint32_t i = 0; i < 20; i++)
        assert_int_equal(seen.lsn[i], 101 + i);
    wal_close(&w);
    remove_dir();
}

/* A value that holds a well-formed frame image (even one checksummed with the segment's own
 * salt) cannot turn a torn write into corruption: recovery never searches inside a frame whose
 * header was valid. */
static void test_frame_image_inside_a_torn_value_is_not_a_frame(void **state)
{
    (void)state;
    make_dir();
    struct wal w;
    struct wal_recovery info;
    struct wal_config c = config(1 << 20, 0);
    open_log(&w, &c, 0, &info);
    write_puts(&w, 0, 5, 10, 5);
    /* a frame image as the log would write it at the block where the next frame's value lands */
    static uint8_t image[3 * WAL_IO_ALIGN];
    append_put(&w, 5, "payload", 7);
    struct wal_io io;
    assert_int_equal(wal_seal(&w, 5, &io), 0);
    size_t image_len = io.frame_bytes;
    memset(image, 'v', sizeof(image));
    size_t at = WAL_IO_ALIGN - (WAL_FRAME_HEADER_BYTES + WAL_RECORD_HEADER_BYTES + 4);
    memcpy(image + at, io.buf, image_len); /* frame of LSN 6, valid under this segment's salt */
    /* not written: forget it, as if it failed */
    wal_rewind(&w, &io);
    append_put(&w, 5, image, sizeof(image));
    assert_int_equal(wal_seal(&w, 5, &io), 0);
    /* the crash tears the write after the image: the frame's body is incomplete */
    size_t torn = WAL_IO_ALIGN + image_len + 100;
    assert_true(torn < io.frame_bytes);
    int flags = fcntl(io.fd, F_GETFL);
    assert_int_equal(fcntl(io.fd, F_SETFL, flags & ~O_DIRECT), 0);
    assert_int_equal(io_file_pwrite(NULL, io.fd, io.buf, torn, io.off), 0);
    wal_close(&w);
    open_log(&w, &c, 0, &info);
    check_seen(5);
    assert_true(info.torn_bytes > 0);
    wal_close(&w);
    remove_dir();
}

/* async mode: unsynced frames may reach the disk in any order. A hole followed by frames sealed
 * before the hole was synced is a lost tail (cut, the log opens); a hole where a later frame
 * says the data was durable is corruption. */
static void test_async_power_cut_holes_are_a_lost_tail_not_corruption(void **state)
{
    (void)state;
    make_dir();
    struct wal w;
    struct wal_recovery info;
    struct wal_config c = config(1 << 20, 0);
    open_log(&w, &c, 0, &info);
    uint64_t off[6];
    /* frames 1-2 sealed with nothing synced; then an fdatasync (LSN 2 durable); frames 3-5 */
    uint64_t durable[6] = {0, 0, 0, 2, 2, 2};
    for (uint32_t f = 1; f <= 5; f++) {
        append_put(&w, f - 1, "0123456789", 10);
        off[f] = write_frame(&w, durable[f]);
    }
    wal_close(&w);
    char path[512];
    snprintf(path, sizeof(path), "%s", segment_path(0));
    /* frame 4 never reached the disk; frame 5 did */
    zero_block(path, off[4]);
    open_log(&w, &c, 0, &info);
    check_seen(3);
    assert_int_equal(info.lost_frames, 1);
    assert_non_null(strstr(info.message, "never synced"));
    assert_int_equal(w.next_lsn, 4);
    /* the cut is durable, and the log goes on from it */
    append_put(&w, 3, "again", 5);
    write_frame(&w, 3);
    wal_close(&w);
    open_log(&w, &c, 0, &info);
    check_seen(4);
    assert_int_equal(info.lost_frames, 0);
    wal_close(&w);
    /* frame 2 lost although frame 4 (written after the sync) says it was durable: corruption */
    zero_block(path, off[2]);
    open_log(&w, &c, CS_ECORRUPT, &info);
    assert_non_null(strstr(info.message, "missing before valid"));
    remove_dir();
}

/* Verify mode changes nothing: a torn tail is reported, not cut; leftover .tmp segments stay. */
static void test_verify_changes_nothing(void **state)
{
    (void)state;
    make_dir();
    struct wal w;
    struct wal_recovery info;
    struct wal_config c = config(1 << 20, 0);
    open_log(&w, &c, 0, &info);
    write_puts(&w, 0, 10, 10, 5);
    append_put(&w, 10, "torn", 4);
    struct wal_io io;
    assert_int_equal(wal_seal(&w, 10, &io), 0);
    int flags = fcntl(io.fd, F_GETFL);
    assert_int_equal(fcntl(io.fd, F_SETFL, flags & ~O_DIRECT), 0);
    assert_int_equal(io_file_pwrite(NULL, io.fd, io.buf, 30, io.off), 0);
    wal_close(&w);
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s/wal-00000000000000ff.log.tmp", dir);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fclose(f);
    char path[512];
    snprintf(path, sizeof(path), "%s", segment_path(0));
    uint8_t before[WAL_IO_ALIGN], after[WAL_IO_ALIGN];
    int fd = open(path, O_RDONLY);
    assert_int_equal(pread(fd, before, sizeof(before), (off_t)io.off), (ssize_t)sizeof(before));
    c.mode = WAL_OPEN_VERIFY;
    open_log(&w, &c, 0, &info);
    check_seen(10);
    assert_true(info.torn_bytes > 0);
    wal_close(&w);
    assert_int_equal(pread(fd, after, sizeof(after), (off_t)io.off), (ssize_t)sizeof(after));
    close(fd);
    assert_memory_equal(before, after, sizeof(before));
    assert_int_equal(access(tmp, F_OK), 0);
    /* a normal open cuts the tail and removes the leftover */
    c.mode = WAL_OPEN_NORMAL;
    open_log(&w, &c, 0, &info);
    check_seen(10);
    wal_close(&w);
    assert_int_equal(access(tmp, F_OK), -1);
    remove_dir();
}

/* A process that dies with a frame write in flight may have that write land after the next
 * process opened the log. An open after an unclean close therefore appends to a new segment whose
 * header says where the old one's frames end, and recovery never reads past that point: the late
 * write (here: a frame sealed but written only after the reopen, at the old log's end) cannot
 * overwrite or shadow what the new process wrote. */
static void test_late_write_of_a_dead_writer_is_ignored(void **state)
{
    (void)state;
    make_dir();
    struct wal w;
    struct wal_recovery info;
    struct wal_config c = config(1 << 20, 0);
    open_log(&w, &c, 0, &info);
    write_puts(&w, 0, 10, 10, 5);
    /* the frame in flight when the writer died: sealed, its write not yet landed */
    append_put(&w, 10, "stale", 5);
    struct wal_io io;
    assert_int_equal(wal_seal(&w, 10, &io), 0);
    static uint8_t late[WAL_IO_ALIGN];
    assert_true(io.len >= sizeof(late));
    memcpy(late, io.buf, sizeof(late));
    uint64_t late_off = io.off;
    char old_path[512];
    snprintf(old_path, sizeof(old_path), "%s", segment_path(0));
    wal_close(&w);
    /* the next writer opens after the unclean end, and dies before writing anything; so does
     * the one after it: the empty segment is replaced, not stacked */
    c.fresh_segment = true;
    for (int i = 0; i < 3; i++) {
        open_log(&w, &c, 0, &info);
        check_seen(10);
        assert_int_equal(w.segments, 2);
        assert_int_equal(w.seg_first_lsn, 11);
        if (i < 2)
            wal_close(&w);
    }
    write_puts(&w, 10, 5, 10, 1);
    wal_close(&w);
    /* now the dead writer's write lands */
    int fd = open(old_path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, late, sizeof(late), (off_t)late_off), (ssize_t)sizeof(late));
    close(fd);
    c.fresh_segment = false;
    open_log(&w, &c, 0, &info);
    check_seen(15);
    assert_int_equal(seen.vlen[10], 10); /* the new writer's LSN 11, not the stale frame's */
    wal_close(&w);
    /* a clean reopen appends to the last segment */
    open_log(&w, &c, 0, &info);
    assert_int_equal(w.segments, 2);
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
        cmocka_unit_test(test_damage_the_checkpoint_covers_costs_nothing),
        cmocka_unit_test(test_frame_image_inside_a_torn_value_is_not_a_frame),
        cmocka_unit_test(test_async_power_cut_holes_are_a_lost_tail_not_corruption),
        cmocka_unit_test(test_verify_changes_nothing),
        cmocka_unit_test(test_record_flags_carry_expiry_and_round_trip),
        cmocka_unit_test(test_late_write_of_a_dead_writer_is_ignored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
