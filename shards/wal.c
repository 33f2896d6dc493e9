/* Write-ahead log of one shard.
 *
 * FILES. A shard folder holds a sequence of segment files `wal-<first-lsn, 16 hex>.log`, each
 * preallocated to `wal_segment_bytes` (fallocate; rounded up to WAL_IO_ALIGN) so appends allocate
 * no blocks. A segment is created as `<name>.tmp`, given its header, preallocated and fsynced,
 * then renamed and the folder fsynced: a visible segment always has a valid header. All integers
 * are little-endian.
 *
 * SEGMENT HEADER (64 bytes, offset 0)
 *    0   8  magic "CSWALSEG"
 *    8   4  format version (1)
 *   12   4  shard index
 *   16   8  LSN of the first record stored in this segment
 *   24   8  preallocated size of the segment in bytes
 *   32  24  zero
 *   56   8  XXH3_64 of bytes 0..55
 *
 * FRAME (one group commit: every record of one loop iteration), at 8-byte aligned offsets from 64
 *    0   4  magic 0x52465343 ("CSFR")
 *    4   2  format version (1)
 *    6   2  flags: bit 0 = body is LZ4-compressed; other bits zero
 *    8   8  LSN of the first record (records take consecutive LSNs)
 *   16   4  record count (>= 1)
 *   20   4  body bytes as stored (after compression)
 *   24   4  raw body bytes (before compression; equal when not compressed), <= 64 MiB
 *   28   4  zero
 *   32   8  XXH3_64 of the stored body
 *   40   8  XXH3_64 of bytes 0..39 of this header
 *   48   -  body, then zeros up to the next multiple of 8
 * Header and body are checksummed separately, so a damaged length can never make the reader
 * trust a body, and a frame torn by a crash fails its body checksum.
 *
 * RECORD (inside a raw body; unaligned)
 *    0   1  type: 1 put, 2 delete, 3 batch, 4 collection create, 5 collection drop
 *    1   1  zero
 *    2   2  key bytes (<= 1024; a collection name for type 4)
 *    4   4  shard-local collection id
 *    8   4  value bytes (<= 1 MiB; for a batch, the nested records, <= the frame limit)
 *   12   -  key, then value
 * A batch's value is a sequence of put/delete records applied all-or-nothing under one LSN.
 *
 * WRITING. Records are appended to the open frame in memory. When the shard's loop has no write in
 * flight it seals the frame (compress when the body is at least `wal_compress_bytes` and LZ4
 * shrinks it, checksum) and submits one write with RWF_DSYNC (durable when it completes, as after
 * an fdatasync). While that is in flight, new records fill the other slot: at most one frame is
 * ever being written, so only the last frame of the log can be torn. A frame that does not fit in
 * the rest of the segment goes to a new segment (created synchronously; the unused tail of the old
 * one stays zero).
 *
 * BLOCKS. The segment being appended to is written with direct I/O (O_DIRECT; page-cache writes
 * where the filesystem refuses it), in whole WAL_IO_ALIGN blocks: a write starts at the block that
 * holds the frame's first byte, carrying that block's earlier bytes again (the writer keeps a copy
 * of the last partial block), then the frame, then zeros to the end of its last block. So a frame
 * costs one data write and one device flush, without the page cache's writeback. Rewriting the
 * earlier bytes of a block with the same bytes is what page-cache writeback of that block does
 * too: a torn block write leaves each sector old or new, and both hold them.
 * fallocate leaves *unwritten* extents: the first write into one must convert it, a metadata
 * change that turns the next sync into a journal commit (and makes a direct write wait for a
 * worker thread). So writes also zero ahead: when a write ends within WAL_ZERO_AHEAD_BYTES / 2
 * of the part of the segment known to be written, it carries zeros up to WAL_ZERO_AHEAD_BYTES past
 * its last block (never past the segment's end). One write in roughly every 128 KiB of log pays
 * for the conversion; the others overwrite written blocks. The zeros are ordinary data: a reader
 * sees the same bytes as in a never-written, preallocated tail.
 * FORMAT. None of this changes the bytes that recovery reads (frames at 8-byte aligned offsets,
 * zeros after the last one), so the format version stays 1: logs written before and after read
 * alike.
 *
 * RECOVERY (wal_open). Segments are read in LSN order; the first LSN of each must follow the
 * last record of the one before (a gap is corruption). In each segment, frames are read from
 * offset 64 until a header that is all zeros (the end of the data) or invalid. Each frame must
 * carry the next expected LSN. When a frame is invalid, or the segment's data ends, the rest of
 * the segment is scanned for any valid frame header: finding one means damage in the middle
 * (CS_ECORRUPT, naming file and offset). Otherwise an invalid frame in the last segment is a torn
 * tail: it is cut off (the rest of the segment is zeroed and synced) and reported in
 * info->message; an invalid frame in an earlier segment is corruption. The scan for valid
 * headers reads only the extents that were written (FIEMAP; where the filesystem has no FIEMAP,
 * the SEEK_DATA / SEEK_HOLE regions): the never written, preallocated rest is unwritten; zeros
 * written ahead are written and are scanned, which bounds a clean open's extra reading to
 * about WAL_ZERO_AHEAD_BYTES.
 */
#include "wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include "cstore.h"
#include "io/fault.h"
#include "io/file.h"

#define WAL_SEG_MAGIC "CSWALSEG"
#define WAL_FRAME_MAGIC 0x52465343u
#define WAL_VERSION 1u
#define WAL_FLAG_LZ4 1u
#define WAL_SEGMENT_BYTES_MIN (1u << 20)

_Static_assert(WAL_FRAME_HEADER_BYTES % WAL_FRAME_ALIGN == 0, "frame header keeps alignment");
_Static_assert(WAL_SEGMENT_HEADER_BYTES % WAL_FRAME_ALIGN == 0, "segment header keeps alignment");
_Static_assert(CS_KEY_MAX <= UINT16_MAX, "key length fits the record header");

/* ---- little-endian helpers ---- */

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static size_t align_up(size_t n)
{
    return (n + WAL_FRAME_ALIGN - 1) & ~(size_t)(WAL_FRAME_ALIGN - 1);
}

static uint64_t align_io(uint64_t n)
{
    return (n + WAL_IO_ALIGN - 1) & ~(uint64_t)(WAL_IO_ALIGN - 1);
}

static uint64_t block_start(uint64_t off)
{
    return off & ~(uint64_t)(WAL_IO_ALIGN - 1);
}

/* ---- records ---- */

static size_t rec_bytes(const struct wal_rec *rec)
{
    return WAL_RECORD_HEADER_BYTES + rec->klen + rec->vlen;
}

static void rec_encode(uint8_t *p, const struct wal_rec *rec)
{
    p[0] = rec->type;
    p[1] = 0;
    put_u16(p + 2, (uint16_t)rec->klen);
    put_u32(p + 4, rec->coll);
    put_u32(p + 8, (uint32_t)rec->vlen);
    if (rec->klen)
        memcpy(p + WAL_RECORD_HEADER_BYTES, rec->key, rec->klen);
    if (rec->vlen)
        memcpy(p + WAL_RECORD_HEADER_BYTES + rec->klen, rec->val, rec->vlen);
}

int wal_rec_decode(const uint8_t *buf, size_t len, size_t *off, struct wal_rec *rec)
{
    size_t o = *off;
    if (o > len || len - o < WAL_RECORD_HEADER_BYTES)
        return CS_ECORRUPT;
    const uint8_t *p = buf + o;
    rec->type = p[0];
    rec->klen = get_u16(p + 2);
    rec->coll = get_u32(p + 4);
    rec->vlen = get_u32(p + 8);
    if (p[1] != 0 || rec->klen > CS_KEY_MAX)
        return CS_ECORRUPT;
    if (len - o - WAL_RECORD_HEADER_BYTES < rec->klen + rec->vlen)
        return CS_ECORRUPT;
    switch (rec->type) {
    case WAL_PUT:
        if (rec->klen == 0 || rec->vlen > CS_VALUE_MAX)
            return CS_ECORRUPT;
        break;
    case WAL_DEL:
        if (rec->klen == 0 || rec->vlen != 0)
            return CS_ECORRUPT;
        break;
    case WAL_BATCH:
        if (rec->klen != 0)
            return CS_ECORRUPT;
        break;
    case WAL_COLL_CREATE:
        if (rec->klen == 0 || rec->klen > CS_NAME_MAX || rec->vlen != 0)
            return CS_ECORRUPT;
        break;
    case WAL_COLL_DROP:
        if (rec->klen != 0 || rec->vlen != 0)
            return CS_ECORRUPT;
        break;
    default:
        return CS_ECORRUPT;
    }
    rec->key = p + WAL_RECORD_HEADER_BYTES;
    rec->val = p + WAL_RECORD_HEADER_BYTES + rec->klen;
    *off = o + WAL_RECORD_HEADER_BYTES + rec->klen + rec->vlen;
    return 0;
}

/* ---- frame headers ---- */

enum frame_state { FRAME_OK, FRAME_ZERO, FRAME_BAD };

struct frame_hdr {
    uint16_t flags;     /* WAL_FLAG_* */
    uint64_t first_lsn; /* first record's LSN */
    uint32_t records;   /* record count */
    uint32_t body;      /* stored body bytes */
    uint32_t raw;       /* raw body bytes */
    uint64_t body_sum;  /* body checksum */
};

static void frame_hdr_encode(uint8_t *p, const struct frame_hdr *h)
{
    put_u32(p, WAL_FRAME_MAGIC);
    put_u16(p + 4, WAL_VERSION);
    put_u16(p + 6, h->flags);
    put_u64(p + 8, h->first_lsn);
    put_u32(p + 16, h->records);
    put_u32(p + 20, h->body);
    put_u32(p + 24, h->raw);
    put_u32(p + 28, 0);
    put_u64(p + 32, h->body_sum);
    put_u64(p + 40, XXH3_64bits(p, 40));
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* Check the frame at p (avail bytes to the end of the segment), header and body. */
static enum frame_state frame_check(const uint8_t *p, size_t avail, struct frame_hdr *h)
{
    if (avail < WAL_FRAME_HEADER_BYTES)
        return all_zero(p, avail) ? FRAME_ZERO : FRAME_BAD;
    if (all_zero(p, WAL_FRAME_HEADER_BYTES))
        return FRAME_ZERO;
    if (get_u32(p) != WAL_FRAME_MAGIC || get_u64(p + 40) != XXH3_64bits(p, 40))
        return FRAME_BAD;
    h->flags = get_u16(p + 6);
    h->first_lsn = get_u64(p + 8);
    h->records = get_u32(p + 16);
    h->body = get_u32(p + 20);
    h->raw = get_u32(p + 24);
    h->body_sum = get_u64(p + 32);
    if (get_u16(p + 4) != WAL_VERSION || (h->flags & ~WAL_FLAG_LZ4) || get_u32(p + 28) != 0)
        return FRAME_BAD;
    if (h->records == 0 || h->first_lsn == 0 || h->raw > WAL_FRAME_RAW_MAX || h->body == 0)
        return FRAME_BAD;
    if (!(h->flags & WAL_FLAG_LZ4) && h->body != h->raw)
        return FRAME_BAD;
    if (h->body > avail - WAL_FRAME_HEADER_BYTES)
        return FRAME_BAD;
    if (XXH3_64bits(p + WAL_FRAME_HEADER_BYTES, h->body) != h->body_sum)
        return FRAME_BAD;
    return FRAME_OK;
}

static size_t frame_total(const struct frame_hdr *h)
{
    return align_up(WAL_FRAME_HEADER_BYTES + (size_t)h->body);
}

/* ---- segment files ---- */

static int seg_path(char *buf, size_t size, const char *dir, uint64_t first_lsn, bool tmp)
{
    int n = snprintf(buf, size, "%s/wal-%016" PRIx64 ".log%s", dir, first_lsn, tmp ? ".tmp" : "");
    return n >= (int)size ? -ENAMETOOLONG : 0;
}

static void seg_header_encode(uint8_t *p, unsigned shard, uint64_t first_lsn, uint64_t size)
{
    memset(p, 0, WAL_SEGMENT_HEADER_BYTES);
    memcpy(p, WAL_SEG_MAGIC, 8);
    put_u32(p + 8, WAL_VERSION);
    put_u32(p + 12, shard);
    put_u64(p + 16, first_lsn);
    put_u64(p + 24, size);
    put_u64(p + 56, XXH3_64bits(p, 56));
}

static bool seg_header_valid(const uint8_t *p, unsigned shard, uint64_t first_lsn)
{
    return memcmp(p, WAL_SEG_MAGIC, 8) == 0 && get_u64(p + 56) == XXH3_64bits(p, 56) &&
           get_u32(p + 8) == WAL_VERSION && get_u32(p + 12) == shard &&
           get_u64(p + 16) == first_lsn;
}

/* Create, preallocate and sync a new segment, then make it visible; it becomes the append
 * target. */
static int seg_create(struct wal *w, uint64_t first_lsn, uint64_t size)
{
    size = align_io(size);
    char tmp[PATH_MAX], dst[PATH_MAX];
    int rc = seg_path(tmp, sizeof(tmp), w->dir, first_lsn, true);
    if (!rc)
        rc = seg_path(dst, sizeof(dst), w->dir, first_lsn, false);
    if (rc)
        return rc;
    int fd = -1;
    rc = io_file_open(tmp, O_RDWR | O_CREAT | O_TRUNC, &fd);
    if (rc)
        return rc;
    uint8_t hdr[WAL_SEGMENT_HEADER_BYTES];
    seg_header_encode(hdr, w->shard, first_lsn, size);
    rc = w->fault && io_fault_on_allocate(w->fault) ? -ENOSPC : io_file_preallocate(fd, size);
    if (!rc)
        rc = io_file_pwrite(fd, hdr, sizeof(hdr), 0);
    if (!rc)
        rc = fsync(fd) == 0 ? 0 : -errno;
    if (!rc)
        rc = rename(tmp, dst) == 0 ? 0 : -errno;
    if (!rc)
        rc = io_dir_sync(w->dir);
    if (rc) {
        io_file_close(fd);
        unlink(tmp);
        return rc;
    }
    io_file_close(w->fd);
    w->fd = fd;
    w->seg_first_lsn = first_lsn;
    w->seg_size = size;
    w->seg_off = WAL_SEGMENT_HEADER_BYTES;
    w->segments++;
    /* the header's block was written back whole: it holds data, the header then zeros */
    w->zeroed_end = WAL_IO_ALIGN;
    memcpy(w->tail, hdr, sizeof(hdr));
    w->direct = io_file_direct(fd) == 0;
    return 0;
}

struct seg_list {
    uint64_t *lsn; /* first LSNs, sorted */
    size_t count;  /* entries */
};

static int lsn_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* List the segments of dir in LSN order; remove leftover .tmp segments (never made visible). */
static int seg_list_read(const char *dir, struct seg_list *out)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    size_t cap = 16;
    out->count = 0;
    out->lsn = malloc(cap * sizeof(uint64_t));
    int rc = out->lsn ? 0 : -ENOMEM;
    struct dirent *e;
    while (!rc && (e = readdir(d)) != NULL) {
        uint64_t lsn;
        char tail[8];
        int n = sscanf(e->d_name, "wal-%16" SCNx64 ".lo%7s", &lsn, tail);
        if (n != 2 || strlen(e->d_name) < 24 || strncmp(e->d_name + 20, ".log", 4) != 0)
            continue;
        if (strcmp(e->d_name + 20, ".log.tmp") == 0) {
            unlinkat(dirfd(d), e->d_name, 0);
            continue;
        }
        if (strcmp(e->d_name + 20, ".log") != 0)
            continue;
        if (out->count == WAL_SEGMENTS_MAX) {
            rc = CS_EFULL;
            break;
        }
        if (out->count == cap) {
            cap *= 2;
            uint64_t *p = realloc(out->lsn, cap * sizeof(uint64_t));
            if (!p) {
                rc = -ENOMEM;
                break;
            }
            out->lsn = p;
        }
        out->lsn[out->count++] = lsn;
    }
    closedir(d);
    if (rc) {
        free(out->lsn);
        out->lsn = NULL;
        return rc;
    }
    qsort(out->lsn, out->count, sizeof(uint64_t), lsn_cmp);
    return 0;
}

/* ---- recovery ---- */

#define WAL_DROP_REST 1 /* salvage: this segment and every later one are dropped */

/* Salvage: remove segments [from, count) and sync the folder. */
static int seg_remove_from(struct wal *w, const struct seg_list *segs, size_t from)
{
    for (size_t i = from; i < segs->count; i++) {
        char path[PATH_MAX];
        int rc = seg_path(path, sizeof(path), w->dir, segs->lsn[i], false);
        if (!rc)
            rc = unlink(path) == 0 ? 0 : -errno;
        if (rc)
            return rc;
    }
    return io_dir_sync(w->dir);
}

struct replay {
    struct wal *w;             /* the log being opened */
    wal_apply_fn apply;        /* record consumer */
    void *arg;                 /* its argument */
    struct wal_recovery *info; /* results */
    uint8_t *raw;              /* decompression buffer */
    size_t raw_cap;            /* its size */
    uint64_t expect_lsn;       /* LSN the next frame must start with (0 = any) */
    uint64_t base_lsn;         /* records up to this LSN are in a checkpoint: skipped */
    enum wal_open_mode mode;   /* normal, verify or salvage */
    bool cut;                  /* salvage: the log was cut in the segment just read */
};

static int corrupt(struct replay *r, const char *path, uint64_t off, const char *what)
{
    snprintf(r->info->message, sizeof(r->info->message), "%s at %s offset %" PRIu64, what, path,
             off);
    return CS_ECORRUPT;
}

/* Is there any valid frame header at an aligned offset in p[from..size)? */
static bool valid_frame_in(const uint8_t *p, size_t from, size_t to, size_t size)
{
    struct frame_hdr h;
    for (size_t off = align_up(from); off < to && off + WAL_FRAME_HEADER_BYTES <= size;
         off += WAL_FRAME_ALIGN) {
        if (get_u32(p + off) != WAL_FRAME_MAGIC)
            continue;
        if (frame_check(p + off, size - off, &h) == FRAME_OK)
            return true;
    }
    return false;
}

/* valid_frame_after through FIEMAP: only extents that were written are scanned. The
 * preallocated rest of a segment is unwritten (it reads as zeros and holds no frame), but
 * SEEK_DATA counts it as data on ext4: scanning it cost 20 ms per 64 MiB segment at each open.
 * FIEMAP_FLAG_SYNC first writes back dirty pages, so that data still in the page cache (a
 * buffered write over preallocated space) shows as written. 1: found, 0: none, -1: FIEMAP is
 * not available here. */
static int valid_frame_fiemap(int fd, const uint8_t *p, size_t from, size_t size)
{
    enum { EXTENTS = 32 };
    union {
        struct fiemap fm;
        char bytes[sizeof(struct fiemap) + EXTENTS * sizeof(struct fiemap_extent)];
    } u;
    uint64_t start = from;
    while (start < size) {
        memset(&u, 0, sizeof(u));
        u.fm.fm_start = start;
        u.fm.fm_length = size - start;
        u.fm.fm_flags = FIEMAP_FLAG_SYNC;
        u.fm.fm_extent_count = EXTENTS;
        if (ioctl(fd, FS_IOC_FIEMAP, &u.fm) != 0)
            return -1;
        if (u.fm.fm_mapped_extents == 0)
            return 0;
        for (uint32_t i = 0; i < u.fm.fm_mapped_extents; i++) {
            const struct fiemap_extent *e = &u.fm.fm_extents[i];
            uint64_t end = e->fe_logical + e->fe_length;
            if (!(e->fe_flags & FIEMAP_EXTENT_UNWRITTEN) && end > from) {
                size_t lo = e->fe_logical > from ? (size_t)e->fe_logical : from;
                size_t hi = end < size ? (size_t)end : size;
                /* a frame header may start up to one header before the written region */
                lo = lo > from + WAL_FRAME_HEADER_BYTES ? lo - WAL_FRAME_HEADER_BYTES : from;
                if (lo < hi && valid_frame_in(p, lo, hi, size))
                    return 1;
            }
            if ((e->fe_flags & FIEMAP_EXTENT_LAST) || end <= start)
                return 0;
            start = end;
        }
    }
    return 0;
}

/* Is there any valid frame header at an aligned offset in p[from..size)? Only the parts of the
 * file that were written are read (FIEMAP, else SEEK_DATA / SEEK_HOLE): the preallocated,
 * never written rest of a segment is not scanned. */
static bool valid_frame_after(int fd, const uint8_t *p, size_t from, size_t size)
{
    int found = valid_frame_fiemap(fd, p, from, size);
    if (found >= 0)
        return found == 1;
    size_t pos = from;
    for (int i = 0; i < WAL_SEGMENTS_MAX && pos < size; i++) {
        off_t data = lseek(fd, (off_t)pos, SEEK_DATA);
        if (data < 0)
            return errno == ENXIO ? false : valid_frame_in(p, pos, size, size);
        off_t hole = lseek(fd, data, SEEK_HOLE);
        size_t end = hole < 0 ? size : cs_min_size((size_t)hole, size);
        /* a frame header may start up to one header before the data region */
        size_t start = (size_t)data > pos + WAL_FRAME_HEADER_BYTES
                           ? (size_t)data - WAL_FRAME_HEADER_BYTES
                           : pos;
        if (valid_frame_in(p, start, end, size))
            return true;
        pos = end;
    }
    return false;
}

static int replay_frame(struct replay *r, const uint8_t *p, const struct frame_hdr *h,
                        const char *path, uint64_t off)
{
    const uint8_t *body = p + WAL_FRAME_HEADER_BYTES;
    if (h->flags & WAL_FLAG_LZ4) {
        if (r->raw_cap < h->raw) {
            uint8_t *n = realloc(r->raw, h->raw);
            if (!n)
                return -ENOMEM;
            r->raw = n;
            r->raw_cap = h->raw;
        }
        int got =
            LZ4_decompress_safe((const char *)body, (char *)r->raw, (int)h->body, (int)h->raw);
        if (got < 0 || (uint32_t)got != h->raw)
            return corrupt(r, path, off, "WAL frame body does not decompress");
        body = r->raw;
    }
    size_t pos = 0;
    for (uint32_t i = 0; i < h->records; i++) {
        struct wal_rec rec;
        if (wal_rec_decode(body, h->raw, &pos, &rec))
            return corrupt(r, path, off, "malformed WAL record");
        if (h->first_lsn + i <= r->base_lsn)
            continue;
        int rc = r->apply(r->arg, h->first_lsn + i, &rec);
        if (rc == CS_ECORRUPT)
            return corrupt(r, path, off, "WAL record inconsistent with the log before it");
        if (rc)
            return rc;
        r->info->records++;
    }
    if (pos != h->raw)
        return corrupt(r, path, off, "WAL frame has bytes after its last record");
    r->info->frames++;
    r->info->last_lsn = h->first_lsn + h->records - 1;
    r->expect_lsn = r->info->last_lsn + 1;
    return 0;
}

/* Replay one mapped segment. *end receives the offset where appends would continue. */
/* Salvage: the log ends at off of this segment; what follows is dropped. */
static int salvage_cut(struct replay *r, size_t size, size_t off, size_t *end)
{
    r->cut = true;
    r->info->salvaged_bytes += size - off;
    *end = off;
    return 0;
}

static int replay_segment(struct replay *r, int fd, const uint8_t *p, size_t size, const char *path,
                          bool last, size_t *end)
{
    size_t off = WAL_SEGMENT_HEADER_BYTES;
    for (;;) {
        struct frame_hdr h;
        enum frame_state st = frame_check(p + off, size - off, &h);
        if (st == FRAME_OK) {
            int rc = 0;
            if (r->expect_lsn && h.first_lsn != r->expect_lsn)
                rc = corrupt(r, path, off, "WAL frame out of LSN sequence");
            if (!rc)
                rc = replay_frame(r, p + off, &h, path, off);
            if (rc == CS_ECORRUPT && r->mode == WAL_OPEN_SALVAGE)
                return salvage_cut(r, size, off, end);
            if (rc)
                return rc;
            off += frame_total(&h);
            if (off >= size)
                break;
            continue;
        }
        bool later = valid_frame_after(fd, p, off + WAL_FRAME_ALIGN, size);
        bool damage = later || (st == FRAME_BAD && !last);
        if (damage && r->mode == WAL_OPEN_SALVAGE) {
            (void)corrupt(r, path, off, "damaged WAL frame");
            return salvage_cut(r, size, off, end);
        }
        if (later)
            return corrupt(r, path, off, "damaged WAL frame before valid ones");
        if (st == FRAME_BAD && !last)
            return corrupt(r, path, off, "damaged WAL frame in a full segment");
        if (st == FRAME_BAD) {
            r->info->torn_bytes = size - off;
            snprintf(r->info->message, sizeof(r->info->message),
                     "cut a torn WAL tail at %s offset %zu", path, off);
        }
        break;
    }
    *end = off;
    return 0;
}

static int replay_file(struct replay *r, uint64_t first_lsn, bool last)
{
    struct wal *w = r->w;
    char path[PATH_MAX];
    int rc = seg_path(path, sizeof(path), w->dir, first_lsn, false);
    int fd = -1;
    if (!rc)
        rc = io_file_open(path, O_RDWR, &fd);
    uint64_t size = 0;
    if (!rc)
        rc = io_file_size(fd, &size);
    if (rc) {
        io_file_close(fd);
        return rc;
    }
    if (size < WAL_SEGMENT_HEADER_BYTES) {
        io_file_close(fd);
        return corrupt(r, path, 0, "WAL segment shorter than its header");
    }
    uint8_t *p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        rc = -errno;
        io_file_close(fd);
        return rc;
    }
    madvise(p, size, MADV_SEQUENTIAL);
    size_t end = 0;
    if (!seg_header_valid(p, w->shard, first_lsn))
        rc = corrupt(r, path, 0, "bad WAL segment header");
    else if (r->expect_lsn && first_lsn != r->expect_lsn)
        rc = corrupt(r, path, 0, "WAL segment does not continue the previous one");
    if (rc == CS_ECORRUPT && r->mode == WAL_OPEN_SALVAGE) {
        munmap(p, size);
        io_file_close(fd);
        return WAL_DROP_REST;
    }
    if (!rc)
        rc = replay_segment(r, fd, p, size, path, last, &end);
    if (!rc && end > block_start(end))
        memcpy(w->tail, p + block_start(end), end - block_start(end));
    munmap(p, size);
    if (r->cut)
        last = true; /* the log ends here: later segments are dropped */
    if (!rc && (r->info->torn_bytes || r->cut) && r->mode != WAL_OPEN_VERIFY) {
        rc = io_file_zero(fd, end, size - end);
        if (!rc)
            rc = io_file_sync(fd);
    }
    if (rc || !last) {
        io_file_close(fd);
        return rc;
    }
    w->fd = fd;
    w->seg_first_lsn = first_lsn;
    w->seg_size = size;
    w->seg_off = end;
    w->zeroed_end = align_io(end); /* at least; what lies beyond is zeros or dead bytes */
    w->direct = r->mode != WAL_OPEN_VERIFY && io_file_direct(fd) == 0;
    return 0;
}

/* Make s->io big enough for a frame of raw_cap bytes laid out for writing: the block's bytes
 * before it, the frame, zeros up to WAL_ZERO_AHEAD_BYTES past the block it ends in. A sealed
 * frame is never longer than the raw records it holds. The contents are not kept. */
static int slot_io_reserve(struct wal_slot *s, size_t raw_cap)
{
    size_t need = WAL_IO_ALIGN + align_io(raw_cap) + WAL_ZERO_AHEAD_BYTES + WAL_IO_ALIGN;
    if (need <= s->io_cap)
        return 0;
    void *p = NULL;
    if (posix_memalign(&p, WAL_IO_ALIGN, need) != 0)
        return -ENOMEM;
    free(s->io);
    s->io = p;
    s->io_cap = need;
    return 0;
}

static int slot_init(struct wal *w, struct wal_slot *s)
{
    memset(s, 0, sizeof(*s));
    s->raw_cap = 64 * 1024;
    s->raw = cs_mem_alloc(w->arena, s->raw_cap);
    if (!s->raw)
        return -ENOMEM;
    s->raw_len = WAL_FRAME_HEADER_BYTES;
    return slot_io_reserve(s, s->raw_cap);
}

static void slot_reset(struct wal_slot *s)
{
    s->raw_len = WAL_FRAME_HEADER_BYTES;
    s->first_lsn = 0;
    s->last_lsn = 0;
    s->records = 0;
    s->batch_mark = 0;
}

int wal_open(struct wal *w, const struct wal_config *cfg, wal_apply_fn apply, void *arg,
             struct wal_recovery *info)
{
    cs_assert(cfg->segment_bytes >= WAL_SEGMENT_BYTES_MIN);
    memset(w, 0, sizeof(*w));
    memset(info, 0, sizeof(*info));
    w->fd = -1;
    if (snprintf(w->dir, sizeof(w->dir), "%s", cfg->dir) >= (int)sizeof(w->dir))
        return -ENAMETOOLONG;
    w->shard = cfg->shard;
    w->arena = cfg->arena;
    w->segment_bytes = cfg->segment_bytes;
    w->compress_bytes = cfg->compress_bytes;
    w->fault = cfg->fault;
    int rc = slot_init(w, &w->slot[0]);
    if (!rc)
        rc = slot_init(w, &w->slot[1]);
    if (!rc)
        rc = (w->tail = malloc(WAL_IO_ALIGN)) != NULL ? 0 : -ENOMEM;
    struct seg_list segs = {0};
    if (!rc)
        rc = seg_list_read(w->dir, &segs);
    struct replay r = {.w = w,
                       .apply = apply,
                       .arg = arg,
                       .info = info,
                       .base_lsn = cfg->base_lsn,
                       .mode = cfg->mode};
    if (!rc && segs.count && segs.lsn[0] > cfg->base_lsn + 1 && cfg->mode != WAL_OPEN_SALVAGE) {
        char path[PATH_MAX];
        if (seg_path(path, sizeof(path), w->dir, segs.lsn[0], false) == 0)
            rc = corrupt(&r, path, 0,
                         "WAL records between the checkpoint and this segment are missing");
    }
    size_t used = 0;
    for (; !rc && used < segs.count && !r.cut; used++)
        rc = replay_file(&r, segs.lsn[used], used + 1 == segs.count);
    if (rc == WAL_DROP_REST) {
        used--; /* that segment goes too */
        rc = 0;
    }
    if (!rc && used < segs.count) {
        rc = seg_remove_from(w, &segs, used);
        info->salvaged_segments = segs.count - used;
    }
    if (!rc && (info->salvaged_bytes || info->salvaged_segments)) {
        size_t n = strlen(info->message);
        snprintf(info->message + n, sizeof(info->message) - n,
                 "%ssalvage dropped %" PRIu64 " bytes and %" PRIu64 " later segments",
                 n ? "; " : "", info->salvaged_bytes, info->salvaged_segments);
    }
    segs.count = used;
    w->segments = segs.count;
    w->next_lsn = info->last_lsn + 1;
    if (!rc && segs.count && info->last_lsn == 0)
        w->next_lsn = segs.lsn[segs.count - 1];
    if (w->next_lsn <= cfg->base_lsn)
        w->next_lsn = cfg->base_lsn + 1;
    free(segs.lsn);
    free(r.raw);
    if (!rc && w->fd < 0 && cfg->mode != WAL_OPEN_VERIFY)
        rc = seg_create(w, w->next_lsn, w->segment_bytes);
    if (rc)
        wal_close(w);
    return rc;
}

void wal_close(struct wal *w)
{
    io_file_close(w->fd);
    w->fd = -1;
    free(w->tail);
    w->tail = NULL;
    for (int i = 0; i < 2; i++) {
        cs_mem_free(w->slot[i].raw);
        cs_mem_free(w->slot[i].out);
        free(w->slot[i].io);
        w->slot[i].raw = NULL;
        w->slot[i].out = NULL;
        w->slot[i].io = NULL;
    }
}

/* ---- appending ---- */

static int slot_reserve(struct wal *w, struct wal_slot *s, size_t more)
{
    size_t need = s->raw_len + more + WAL_FRAME_ALIGN;
    if (need <= s->raw_cap)
        return 0;
    size_t cap = s->raw_cap;
    while (cap < need)
        cap *= 2;
    if (slot_io_reserve(s, cap))
        return -ENOMEM;
    uint8_t *p = cs_mem_realloc(w->arena, s->raw, cap);
    if (!p)
        return -ENOMEM;
    s->raw = p;
    s->raw_cap = cap;
    return 0;
}

static uint64_t slot_take_lsn(struct wal *w, struct wal_slot *s)
{
    uint64_t lsn = w->next_lsn++;
    if (s->records == 0)
        s->first_lsn = lsn;
    s->last_lsn = lsn;
    s->records++;
    return lsn;
}

size_t wal_rec_bytes(const struct wal_rec *rec)
{
    return rec_bytes(rec);
}

int wal_reserve(struct wal *w, size_t bytes)
{
    return slot_reserve(w, &w->slot[w->open], bytes);
}

/* Room for n more bytes was reserved. */
static void slot_assert_room(const struct wal_slot *s, size_t n)
{
    cs_assert(s->raw_len + n <= s->raw_cap);
}

uint64_t wal_append(struct wal *w, const struct wal_rec *rec)
{
    struct wal_slot *s = &w->slot[w->open];
    cs_assert(s->batch_mark == 0);
    cs_assert(rec->klen <= CS_KEY_MAX);
    slot_assert_room(s, rec_bytes(rec));
    rec_encode(s->raw + s->raw_len, rec);
    s->raw_len += rec_bytes(rec);
    return slot_take_lsn(w, s);
}

void wal_batch_begin(struct wal *w)
{
    struct wal_slot *s = &w->slot[w->open];
    cs_assert(s->batch_mark == 0);
    slot_assert_room(s, WAL_RECORD_HEADER_BYTES);
    s->batch_mark = s->raw_len;
    s->raw_len += WAL_RECORD_HEADER_BYTES;
}

void wal_batch_add(struct wal *w, const struct wal_rec *rec)
{
    struct wal_slot *s = &w->slot[w->open];
    cs_assert(s->batch_mark != 0);
    cs_assert(rec->type == WAL_PUT || rec->type == WAL_DEL);
    slot_assert_room(s, rec_bytes(rec));
    rec_encode(s->raw + s->raw_len, rec);
    s->raw_len += rec_bytes(rec);
}

uint64_t wal_batch_end(struct wal *w)
{
    struct wal_slot *s = &w->slot[w->open];
    cs_assert(s->batch_mark != 0);
    size_t nested = s->raw_len - s->batch_mark - WAL_RECORD_HEADER_BYTES;
    uint8_t *p = s->raw + s->batch_mark;
    p[0] = WAL_BATCH;
    p[1] = 0;
    put_u16(p + 2, 0);
    put_u32(p + 4, 0);
    put_u32(p + 8, (uint32_t)nested);
    s->batch_mark = 0;
    return slot_take_lsn(w, s);
}

size_t wal_open_bytes(const struct wal *w)
{
    return w->slot[w->open].raw_len - WAL_FRAME_HEADER_BYTES;
}

/* Compress the body into s->out when it pays; returns the frame start and fills h. */
static uint8_t *slot_finish(struct wal *w, struct wal_slot *s, struct frame_hdr *h)
{
    size_t raw = s->raw_len - WAL_FRAME_HEADER_BYTES;
    uint8_t *frame = s->raw;
    h->flags = 0;
    h->body = (uint32_t)raw;
    if (w->compress_bytes && raw >= w->compress_bytes) {
        size_t cap = WAL_FRAME_HEADER_BYTES + (size_t)LZ4_compressBound((int)raw) + WAL_FRAME_ALIGN;
        if (s->out_cap < cap) {
            uint8_t *p = cs_mem_realloc(w->arena, s->out, cap);
            if (p) {
                s->out = p;
                s->out_cap = cap;
            }
        }
        int c = s->out_cap >= cap
                    ? LZ4_compress_default((const char *)s->raw + WAL_FRAME_HEADER_BYTES,
                                           (char *)s->out + WAL_FRAME_HEADER_BYTES, (int)raw,
                                           (int)(cap - WAL_FRAME_HEADER_BYTES))
                    : 0;
        if (c > 0 && (size_t)c + WAL_FRAME_ALIGN < raw) {
            frame = s->out;
            h->flags = WAL_FLAG_LZ4;
            h->body = (uint32_t)c;
        }
    }
    h->first_lsn = s->first_lsn;
    h->records = s->records;
    h->raw = (uint32_t)raw;
    size_t end = WAL_FRAME_HEADER_BYTES + h->body;
    memset(frame + end, 0, align_up(end) - end);
    h->body_sum = XXH3_64bits(frame + WAL_FRAME_HEADER_BYTES, h->body);
    frame_hdr_encode(frame, h);
    return frame;
}

/* Lay the sealed frame out in s->io as whole blocks: the bytes of its first block that are
 * already in the file (w->tail), the frame, then zeros to the end of its last block, or to
 * WAL_ZERO_AHEAD_BYTES past it when the blocks ahead are still unwritten (see the top comment). */
static void io_prepare(struct wal *w, struct wal_slot *s, const uint8_t *frame, size_t total,
                       struct wal_io *io)
{
    uint64_t off = block_start(w->seg_off);
    size_t prefix = (size_t)(w->seg_off - off);
    uint64_t end = align_io(w->seg_off + total);
    /* segments this module creates have whole blocks; one from elsewhere may end mid-block */
    uint64_t seg_end = align_io(w->seg_size);
    if (w->zeroed_end < seg_end && end + WAL_ZERO_AHEAD_BYTES / 2 > w->zeroed_end)
        end = cs_min_u64(seg_end, end + WAL_ZERO_AHEAD_BYTES);
    size_t len = (size_t)(end - off);
    cs_assert(len <= s->io_cap);
    cs_assert(prefix + total <= len);
    memcpy(s->io, w->tail, prefix);
    memcpy(s->io + prefix, frame, total);
    memset(s->io + prefix + total, 0, len - prefix - total);
    io->fd = w->fd;
    io->buf = s->io;
    io->len = len;
    io->off = off;
    io->frame_at = prefix;
    io->frame_bytes = total;
}

int wal_seal(struct wal *w, struct wal_io *io)
{
    cs_assert(!w->in_flight);
    struct wal_slot *s = &w->slot[w->open];
    cs_assert(s->records > 0);
    cs_assert(s->batch_mark == 0);
    cs_assert(s->raw_len - WAL_FRAME_HEADER_BYTES <= WAL_FRAME_RAW_MAX);
    struct frame_hdr h;
    uint8_t *frame = slot_finish(w, s, &h);
    size_t total = frame_total(&h);
    cs_assert(total <= s->raw_cap); /* so s->io has room (slot_io_reserve) */
    int rc = 0;
    if (w->seg_off + total > w->seg_size) {
        /* The old segment's frames are all durable or being synced by the caller's policy;
         * sync it once more before leaving it (async mode may have unsynced bytes). */
        rc = io_file_sync(w->fd);
        uint64_t size = w->segment_bytes;
        if (size < WAL_SEGMENT_HEADER_BYTES + total)
            size = WAL_SEGMENT_HEADER_BYTES + total;
        if (!rc)
            rc = seg_create(w, s->first_lsn, size);
        if (rc)
            return rc;
    }
    io_prepare(w, s, frame, total, io);
    io->last_lsn = s->last_lsn;
    io->raw_bytes = h.raw;
    io->records = s->records;
    w->seg_off += total;
    w->flight_off = io->off;
    w->flight_end = io->off + io->len;
    w->in_flight = true;
    w->open ^= 1u;
    return 0;
}

void wal_io_done(struct wal *w)
{
    cs_assert(w->in_flight);
    cs_assert(w->seg_off <= w->flight_end);
    w->in_flight = false;
    slot_reset(&w->slot[w->open ^ 1u]);
    /* the block the next frame starts in, as it now is in the file */
    uint64_t blk = block_start(w->seg_off);
    cs_assert(blk >= w->flight_off);
    memcpy(w->tail, w->slot[w->open ^ 1u].io + (blk - w->flight_off), (size_t)(w->seg_off - blk));
    if (w->flight_end > w->zeroed_end)
        w->zeroed_end = w->flight_end;
}

void wal_discard_open(struct wal *w)
{
    struct wal_slot *s = &w->slot[w->open];
    cs_assert(s->batch_mark == 0);
    if (s->records)
        w->next_lsn = s->first_lsn;
    slot_reset(s);
}

void wal_rewind(struct wal *w, const struct wal_io *io)
{
    cs_assert(w->in_flight);
    struct wal_slot *flight = &w->slot[w->open ^ 1u];
    cs_assert(flight->last_lsn == io->last_lsn);
    cs_assert(io->fd == w->fd);
    w->next_lsn = flight->first_lsn;
    w->seg_off = io->off + io->frame_at;
    w->in_flight = false;
    slot_reset(flight);
    slot_reset(&w->slot[w->open]);
}

int wal_drop_before(struct wal *w, uint64_t lsn)
{
    struct seg_list segs = {0};
    int rc = seg_list_read(w->dir, &segs);
    if (rc)
        return rc;
    size_t dropped = 0;
    /* Segment i holds LSNs [lsn[i], lsn[i+1]): all covered when lsn[i+1] <= lsn + 1. */
    for (size_t i = 0; i + 1 < segs.count && !rc; i++) {
        if (segs.lsn[i + 1] > lsn + 1 || segs.lsn[i] == w->seg_first_lsn)
            break;
        char path[PATH_MAX];
        rc = seg_path(path, sizeof(path), w->dir, segs.lsn[i], false);
        if (!rc)
            rc = unlink(path) == 0 ? 0 : -errno;
        if (!rc)
            dropped++;
    }
    free(segs.lsn);
    w->segments -= dropped;
    if (dropped && !rc)
        rc = io_dir_sync(w->dir);
    return rc;
}
