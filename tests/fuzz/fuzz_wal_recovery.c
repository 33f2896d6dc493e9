/* libFuzzer target for WAL recovery (wal_open in shards/wal.c) over a whole segment file. Built
 * and run by `make fuzz`.
 *
 * Once per process the harness makes a temporary shard folder (in /dev/shm when there is one)
 * and lets wal_open create the first segment, wal-0000000000000001.log; its header block is kept.
 * For each input, the folder is emptied, and the segment is written again: that header block
 * (with the input's salt put in and its checksum refreshed), then the input's frames.
 *
 * Input:
 *    0   1  mode: bit 0 = fix frame checksums (see fuzz_wal_frame.c), bit 1 = salvage instead of
 *           normal mode for the second open, bits 2-3 = zero blocks appended after the frames,
 *           bit 4 = the file ends right after the last frame's bytes (not on a block boundary)
 *    1   1  base LSN: the checkpoint LSN recovery is told about (records up to it are skipped)
 *    2   8  salt of the segment (little-endian)
 *   10   -  chunks, each a 16-bit little-endian length and that many bytes, written from offset
 *           WAL_IO_ALIGN on, each at the next block boundary after the one before (a chunk of
 *           length 0 leaves one block of zeros: a hole)
 *
 * Each input is opened in verify mode (read-only), then in normal (or salvage) mode, then, if
 * that succeeded, in verify mode again. Properties checked: wal_open returns 0 or a negative
 * code and never crashes or hangs; records reach apply in strictly increasing LSN order, all
 * after the base LSN; verify and normal mode replay the same records and agree on success (the
 * mode changes only what is written); after a normal open that succeeded, the log verifies and
 * holds the same records. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "cstore.h"
#include "shards/wal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHUNKS_MAX 64u             /* chunks written per input */
#define FUZZ_SEGMENT_BYTES (1ull << 20) /* segment size wal_open gives new segments */

static char fuzz_dir[128];                            /* the shard folder, made once */
static char fuzz_seg[192];                            /* its first segment */
static uint8_t fuzz_header[WAL_SEGMENT_HEADER_BYTES]; /* the header wal_open wrote */

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

struct seen {
    uint64_t base;    /* records up to it must not be applied */
    uint64_t last;    /* last LSN applied */
    uint64_t records; /* records applied */
    uint64_t sum;     /* over the LSNs and key bytes: compares two replays */
};

static int on_rec(void *arg, uint64_t lsn, const struct wal_rec *rec)
{
    struct seen *s = arg;
    if (lsn <= s->base || lsn <= s->last || rec->klen > CS_KEY_MAX)
        abort();
    s->last = lsn;
    s->records++;
    s->sum = s->sum * 31 + lsn;
    const uint8_t *k = rec->key;
    for (size_t i = 0; i < rec->klen; i++)
        s->sum += k[i];
    return 0;
}

static struct wal_config config(uint64_t base, enum wal_open_mode mode)
{
    struct wal_config c = {
        .dir = fuzz_dir,
        .segment_bytes = FUZZ_SEGMENT_BYTES,
        .compress_bytes = 4096,
        .base_lsn = base,
        .mode = mode,
    };
    return c;
}

static void empty_dir(void);

/* Remove the folder at exit (libFuzzer exits through exit() after -runs). */
static void cleanup(void)
{
    empty_dir();
    unlink(fuzz_seg);
    rmdir(fuzz_dir);
}

/* Make the folder and its first segment, once. */
static void setup(void)
{
    const char *root = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/cs-fuzz-wal-XXXXXX", root ? root : "/tmp");
    if (!mkdtemp(fuzz_dir))
        abort();
    atexit(cleanup);
    snprintf(fuzz_seg, sizeof(fuzz_seg), "%s/wal-%016x.log", fuzz_dir, 1);
    struct wal w;
    struct wal_recovery info;
    struct wal_config c = config(0, WAL_OPEN_NORMAL);
    struct seen s = {0};
    if (wal_open(&w, &c, on_rec, &s, &info) != 0)
        abort();
    wal_close(&w);
    FILE *f = fopen(fuzz_seg, "rb");
    if (!f || fread(fuzz_header, 1, sizeof(fuzz_header), f) != sizeof(fuzz_header))
        abort();
    fclose(f);
}

/* Remove everything from the folder but the first segment. */
static void empty_dir(void)
{
    DIR *d = opendir(fuzz_dir);
    if (!d)
        abort();
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "wal-", 4) != 0 && strncmp(e->d_name, "snap-", 5) != 0)
            continue;
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", fuzz_dir, e->d_name);
        if (strcmp(path, fuzz_seg) != 0)
            unlink(path);
    }
    closedir(d);
}

static void fix_frame(uint8_t *f, size_t len, uint64_t salt)
{
    if (len < WAL_FRAME_HEADER_BYTES)
        return;
    uint32_t body = get32(f + 20);
    if (body <= len - WAL_FRAME_HEADER_BYTES)
        put64(f + 40, XXH3_64bits_withSeed(f + WAL_FRAME_HEADER_BYTES, body, salt));
    put64(f + 48, XXH3_64bits_withSeed(f, 48, salt));
}

/* Write the segment this input describes (size >= 10). */
static void write_segment(const uint8_t *data, size_t size)
{
    uint8_t mode = data[0];
    uint64_t salt = get64(data + 2);
    int fd = open(fuzz_seg, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        abort();
    uint8_t blk[WAL_IO_ALIGN] = {0};
    memcpy(blk, fuzz_header, sizeof(fuzz_header));
    put64(blk + 32, salt);
    put64(blk + 56, XXH3_64bits(blk, 56));
    if (pwrite(fd, blk, sizeof(blk), 0) != (ssize_t)sizeof(blk))
        abort();
    uint64_t off = WAL_IO_ALIGN, end = off;
    size_t pos = 10;
    for (unsigned k = 0; k < FUZZ_CHUNKS_MAX && size - pos >= 2; k++) {
        size_t len = (size_t)data[pos] | (size_t)data[pos + 1] << 8;
        pos += 2;
        if (len > size - pos)
            len = size - pos;
        if (len == 0) {
            off += WAL_IO_ALIGN;
            end = off;
            continue;
        }
        uint8_t *chunk = malloc(len);
        if (!chunk)
            abort();
        memcpy(chunk, data + pos, len);
        pos += len;
        if (mode & 1)
            fix_frame(chunk, len, salt);
        if (pwrite(fd, chunk, len, (off_t)off) != (ssize_t)len)
            abort();
        free(chunk);
        end = off + len;
        off = (end + WAL_IO_ALIGN - 1) & ~(uint64_t)(WAL_IO_ALIGN - 1);
    }
    if (!(mode & 16))
        end = (end + WAL_IO_ALIGN - 1) & ~(uint64_t)(WAL_IO_ALIGN - 1);
    end += (uint64_t)((mode >> 2) & 3) * WAL_IO_ALIGN;
    if (ftruncate(fd, (off_t)end) != 0)
        abort();
    close(fd);
}

/* Open the log in mode; 0 or a negative code, never anything else. */
static int open_log(uint64_t base, enum wal_open_mode mode, struct seen *s,
                    struct wal_recovery *info)
{
    memset(s, 0, sizeof(*s));
    s->base = base;
    struct wal w;
    struct wal_config c = config(base, mode);
    int rc = wal_open(&w, &c, on_rec, s, info);
    if (rc > 0)
        abort();
    if (rc == 0)
        wal_close(&w);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fuzz_dir[0])
        setup();
    if (size < 10)
        return 0;
    uint64_t base = data[1];
    bool salvage = data[0] & 2;
    empty_dir();
    write_segment(data, size);
    struct seen v, n, again;
    struct wal_recovery info;
    int rc_verify = open_log(base, WAL_OPEN_VERIFY, &v, &info);
    if (getenv("FUZZ_DEBUG"))
        fprintf(stderr, "verify: rc %d, %llu records: %s\n", rc_verify,
                (unsigned long long)v.records, info.message);
    int rc = open_log(base, salvage ? WAL_OPEN_SALVAGE : WAL_OPEN_NORMAL, &n, &info);
    if (getenv("FUZZ_DEBUG"))
        fprintf(stderr, "%s: rc %d, %llu records: %s\n", salvage ? "salvage" : "normal", rc,
                (unsigned long long)n.records, info.message);
    if (!salvage && (rc == 0) != (rc_verify == 0))
        abort();
    if (!salvage && rc == 0 && (n.records != v.records || n.sum != v.sum))
        abort();
    if (salvage && rc_verify == 0 && rc == 0 && (n.records != v.records || n.sum != v.sum))
        abort();
    if (rc != 0)
        return 0;
    int rc_again = open_log(base, WAL_OPEN_VERIFY, &again, &info);
    /* A cut right after damage that was skipped (bytes before a frame that continues the log)
     * leaves that damage in place, so this open may report a torn tail again: not checked. */
    if (rc_again != 0 || again.records != n.records || again.sum != n.sum) {
        fprintf(stderr, "reopen after a normal open: rc %d (%s), %llu records (before: %llu)\n",
                rc_again, info.message, (unsigned long long)again.records,
                (unsigned long long)n.records);
        abort();
    }
    return 0;
}
