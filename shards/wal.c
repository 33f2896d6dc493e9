/* Write-ahead log of one shard.
 *
 * FILES. A shard folder holds a sequence of segment files `wal-<first-lsn, 16 hex>.log`, each
 * preallocated to `wal_segment_bytes` (fallocate; rounded up to WAL_IO_ALIGN) so appends allocate
 * no blocks. A segment is created as `<name>.tmp`, given its header, preallocated and fsynced,
 * then renamed and the folder fsynced: a visible segment always has a valid header. All integers
 * are little-endian. Every disk operation goes through io/ (io/file.c), so that the fault plan
 * can fail or cut any of them.
 *
 * SEGMENT HEADER (64 bytes at offset 0; the rest of the first WAL_IO_ALIGN block is zero)
 *    0   8  magic "CSWALSEG"
 *    8   4  format version (2)
 *   12   4  shard index
 *   16   8  LSN of the first record stored in this segment
 *   24   8  preallocated size of the segment in bytes
 *   32   8  salt: a random value drawn when the segment is made, seeding every frame checksum
 *   40   8  where the segment before this one ends (its frames end there; 0: not recorded):
 *           recovery ignores anything after it (see "LATE WRITES")
 *   48   8  zero
 *   56   8  XXH3_64 of bytes 0..55
 *
 * FRAME (one group commit: the records of one sealed batch), at every WAL_IO_ALIGN-aligned offset
 * from WAL_IO_ALIGN on, each starting a fresh block:
 *    0   4  magic 0x52465343 ("CSFR")
 *    4   2  format version (2)
 *    6   2  flags: bit 0 = body is LZ4-compressed; other bits zero
 *    8   8  LSN of the first record (records take consecutive LSNs)
 *   16   4  record count (>= 1)
 *   20   4  body bytes as stored (after compression)
 *   24   4  raw body bytes (before compression; equal when not compressed), <= 64 MiB
 *   28   4  zero
 *   32   8  durable LSN: every record up to it was durable when the frame was sealed (< first LSN)
 *   40   8  XXH3_64 of the stored body, seeded with the segment's salt
 *   48   8  XXH3_64 of bytes 0..47 of this header, seeded with the segment's salt
 *   56   -  body, then zeros up to the end of the block the frame ends in
 * Header and body are checksummed separately, so a damaged length can never make the reader
 * trust a body, and a frame torn by a crash fails its body checksum. The salt makes a frame image
 * that an application stored inside a value (or that an older segment left behind) fail both
 * checksums: it cannot pass for a frame.
 *
 * RECORD (inside a raw body; unaligned)
 *    0   1  type: 1 put, 2 delete, 3 batch, 4 collection create, 5 collection drop,
 *           6 transaction prepare, 7 transaction commit, 8 transaction abort
 *    1   1  flags: bit 0 (WAL_REC_EXPIRY) = an 8-byte expiry precedes the value (puts only,
 *           top-level or nested); bit 1 (WAL_REC_HAD_EXPIRY) = a delete whose record had an
 *           expiry: checkpoints leave expired records out, so replay accepts that the key is
 *           missing then (deletes only); other bits zero. Logs written before expiry existed
 *           hold 0 here and replay unchanged.
 *    2   2  key bytes (<= 1024; a collection name for type 4)
 *    4   4  shard-local collection id
 *    8   4  value bytes (<= 1 MiB; for a batch, the nested records, <= the frame limit); the
 *           expiry's 8 bytes are not counted here
 *   12   -  key, then (flag bit 0) the expiry: u64 Unix milliseconds, non-zero, then the value
 * A put with an expiry sets the record's expiry; a put without one clears it (as Redis SET
 * does). The background reclaim of expired records logs plain deletes.
 * A batch's value is a sequence of put/delete records applied all-or-nothing under one LSN.
 * A prepare's key is u64 transaction id, u16 participant count n, u16 shard index[n] (strictly
 * increasing, this shard among them); its value is this shard's writes as a batch's value is,
 * applied when a commit record with the same id follows. Commit and abort records hold the
 * id (8 bytes) as key and no value. See shards/txn.c.
 *
 * WRITING. Records are appended to the open frame in memory. When the shard's loop has no write in
 * flight it seals the frame (compress when the body is at least `wal_compress_bytes` and LZ4
 * shrinks it, checksum) and submits one write: with RWF_DSYNC in sync mode (durable when it
 * completes, as after an fdatasync), a plain one in async mode (fdatasync'ed every interval).
 * While that is in flight, new records fill the other slot: at most one frame is ever being
 * written. A frame that does not fit in the rest of the segment goes to a new segment (created
 * synchronously, after a last fdatasync of the old one; the unused tail of the old one stays
 * zero).
 *
 * LATE WRITES. When a process dies, writes it had submitted to io_uring may still reach the file
 * after it is gone (the kernel tears the ring down on its own time), and so after the next
 * process opened the log. Such a write lands where the dead process's log ended, where the new
 * process would append. So an open after an unclean close (engine/db.c keeps a clean-close mark
 * in the LOCK file) never appends to the last segment: it starts a new one whose header records
 * where the old one's frames end, and recovery reads nothing of a segment past that point.
 *
 * BLOCKS AND WHAT IS ASSUMED OF THE DISK. The segment being appended to is written with direct
 * I/O (O_DIRECT; page-cache writes where the filesystem refuses it), in whole WAL_IO_ALIGN
 * blocks, and every frame starts a fresh block: a write never covers a byte of an earlier frame,
 * so a write torn by a power cut (at any granularity, even inside a sector) can damage only the
 * frame being written, never one acknowledged before. This costs the padding of each frame's
 * last block. Assumed of the disk: a completed RWF_DSYNC write or fdatasync is durable; an
 * interrupted write leaves its own range in any mix of old, new and garbage bytes and touches
 * nothing else. A write that fails with ENOSPC is assumed to have written nothing that matters:
 * the shard takes the frame's changes back and writes the next frame at the same offset with the
 * same LSNs, overwriting whatever part of it reached the disk (on filesystems that allocate at
 * write time, btrfs or thin provisioning, a crash between the failure and the next frame could
 * leave the failed frame whole on disk and bring its writes back at recovery: they were reported
 * as failed, not acknowledged, so no acknowledged write is lost either way).
 * fallocate leaves *unwritten* extents: the first write into one must convert it, a metadata
 * change that turns the next sync into a journal commit (and makes a direct write wait for a
 * worker thread). So writes also zero ahead: when a write ends within WAL_ZERO_AHEAD_BYTES / 2
 * of the part of the segment known to be written, it carries zeros up to WAL_ZERO_AHEAD_BYTES past
 * its last block (never past the segment's end). One write in roughly every 128 KiB of log pays
 * for the conversion; the others overwrite written blocks. The zeros are ordinary data: a reader
 * sees the same bytes as in a never-written, preallocated tail.
 *
 * RECOVERY: see wal_recovery.c (wal_open).
 */
#include "wal.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include "cstore.h"
#include "io/fault.h"
#include "io/file.h"
#include "shards/wal_int.h"

/* ---- records ---- */

static size_t rec_bytes(const struct wal_rec *rec)
{
    return WAL_RECORD_HEADER_BYTES + rec->klen + (rec->expire_ms ? WAL_EXPIRY_BYTES : 0) +
           rec->vlen;
}

static void rec_encode(uint8_t *p, const struct wal_rec *rec)
{
    cs_assert(!rec->expire_ms || rec->type == WAL_PUT);
    p[0] = rec->type;
    cs_assert(!rec->had_expiry || rec->type == WAL_DEL);
    p[1] = (rec->expire_ms ? WAL_REC_EXPIRY : 0) | (rec->had_expiry ? WAL_REC_HAD_EXPIRY : 0);
    cs_put_le16(p + 2, (uint16_t)rec->klen);
    cs_put_le32(p + 4, rec->coll);
    cs_put_le32(p + 8, (uint32_t)rec->vlen);
    uint8_t *q = p + WAL_RECORD_HEADER_BYTES;
    if (rec->klen)
        memcpy(q, rec->key, rec->klen);
    q += rec->klen;
    if (rec->expire_ms) {
        cs_put_le64(q, rec->expire_ms);
        q += WAL_EXPIRY_BYTES;
    }
    if (rec->vlen)
        memcpy(q, rec->val, rec->vlen);
}

int wal_txn_key_decode(const void *key, size_t klen, uint64_t *id, uint16_t *nparts,
                       uint16_t *parts)
{
    const uint8_t *p = key;
    if (klen < WAL_TXN_ID_BYTES + 2)
        return CS_ECORRUPT;
    uint16_t n = cs_get_le16(p + WAL_TXN_ID_BYTES);
    if (n < 2 || n > WAL_TXN_PARTS_MAX || klen != WAL_TXN_ID_BYTES + 2u + 2u * n)
        return CS_ECORRUPT;
    for (uint16_t i = 0; i < n; i++) {
        uint16_t s = cs_get_le16(p + WAL_TXN_ID_BYTES + 2 + 2 * i);
        if (i && s <= cs_get_le16(p + WAL_TXN_ID_BYTES + 2 * i))
            return CS_ECORRUPT;
        if (parts)
            parts[i] = s;
    }
    if (id)
        *id = cs_get_le64(p);
    if (nparts)
        *nparts = n;
    return 0;
}

int wal_rec_decode(const uint8_t *buf, size_t len, size_t *off, struct wal_rec *rec)
{
    size_t o = *off;
    if (o > len || len - o < WAL_RECORD_HEADER_BYTES)
        return CS_ECORRUPT;
    const uint8_t *p = buf + o;
    rec->type = p[0];
    rec->klen = cs_get_le16(p + 2);
    rec->coll = cs_get_le32(p + 4);
    rec->vlen = cs_get_le32(p + 8);
    rec->expire_ms = 0;
    rec->had_expiry = p[1] & WAL_REC_HAD_EXPIRY;
    if ((p[1] & ~(WAL_REC_EXPIRY | WAL_REC_HAD_EXPIRY)) || rec->klen > CS_KEY_MAX)
        return CS_ECORRUPT;
    if (((p[1] & WAL_REC_EXPIRY) && rec->type != WAL_PUT) ||
        ((p[1] & WAL_REC_HAD_EXPIRY) && rec->type != WAL_DEL))
        return CS_ECORRUPT;
    size_t exp_bytes = (p[1] & WAL_REC_EXPIRY) ? WAL_EXPIRY_BYTES : 0;
    if (len - o - WAL_RECORD_HEADER_BYTES < rec->klen + exp_bytes + (size_t)rec->vlen)
        return CS_ECORRUPT;
    switch (rec->type) {
    case WAL_PUT:
        if (rec->klen == 0 || rec->vlen > CS_VALUE_MAX)
            return CS_ECORRUPT;
        if (exp_bytes) {
            rec->expire_ms = cs_get_le64(p + WAL_RECORD_HEADER_BYTES + rec->klen);
            if (rec->expire_ms == 0)
                return CS_ECORRUPT;
        }
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
    case WAL_TXN_PREPARE:
        if (wal_txn_key_decode(p + WAL_RECORD_HEADER_BYTES, rec->klen, NULL, NULL, NULL))
            return CS_ECORRUPT;
        break;
    case WAL_TXN_COMMIT:
    case WAL_TXN_ABORT:
        if (rec->klen != WAL_TXN_ID_BYTES || rec->vlen != 0)
            return CS_ECORRUPT;
        break;
    default:
        return CS_ECORRUPT;
    }
    rec->key = p + WAL_RECORD_HEADER_BYTES;
    rec->val = p + WAL_RECORD_HEADER_BYTES + rec->klen + exp_bytes;
    *off = o + WAL_RECORD_HEADER_BYTES + rec->klen + exp_bytes + rec->vlen;
    return 0;
}

/* ---- frame headers ---- */

static void frame_hdr_encode(uint8_t *p, const struct frame_hdr *h, uint64_t salt)
{
    cs_put_le32(p, WAL_FRAME_MAGIC);
    cs_put_le16(p + 4, WAL_VERSION);
    cs_put_le16(p + 6, h->flags);
    cs_put_le64(p + 8, h->first_lsn);
    cs_put_le32(p + 16, h->records);
    cs_put_le32(p + 20, h->body);
    cs_put_le32(p + 24, h->raw);
    cs_put_le32(p + 28, 0);
    cs_put_le64(p + 32, h->durable_lsn);
    cs_put_le64(p + 40, h->body_sum);
    cs_put_le64(p + 48, XXH3_64bits_withSeed(p, 48, salt));
}

/* Check a frame header (WAL_FRAME_HEADER_BYTES at p). */
enum frame_state wal_head_state(const uint8_t *p, uint64_t salt, struct frame_hdr *h)
{
    if (all_zero(p, WAL_FRAME_HEADER_BYTES))
        return FRAME_ZERO;
    if (cs_get_le32(p) != WAL_FRAME_MAGIC ||
        cs_get_le64(p + 48) != XXH3_64bits_withSeed(p, 48, salt))
        return FRAME_BAD_HEAD;
    h->flags = cs_get_le16(p + 6);
    h->first_lsn = cs_get_le64(p + 8);
    h->records = cs_get_le32(p + 16);
    h->body = cs_get_le32(p + 20);
    h->raw = cs_get_le32(p + 24);
    h->durable_lsn = cs_get_le64(p + 32);
    h->body_sum = cs_get_le64(p + 40);
    if (cs_get_le16(p + 4) != WAL_VERSION || (h->flags & ~WAL_FLAG_LZ4) || cs_get_le32(p + 28) != 0)
        return FRAME_BAD_HEAD;
    if (h->records == 0 || h->first_lsn == 0 || h->first_lsn > UINT64_MAX - h->records)
        return FRAME_BAD_HEAD;
    if (h->raw > WAL_FRAME_RAW_MAX || h->body == 0 || h->body > WAL_FRAME_RAW_MAX)
        return FRAME_BAD_HEAD;
    if (!(h->flags & WAL_FLAG_LZ4) && h->body != h->raw)
        return FRAME_BAD_HEAD;
    if (h->durable_lsn >= h->first_lsn)
        return FRAME_BAD_HEAD;
    return FRAME_OK;
}

/* Check a whole frame at p (avail bytes to the end of the segment). */
enum frame_state wal_frame_state(const uint8_t *p, size_t avail, uint64_t salt, struct frame_hdr *h)
{
    if (avail < WAL_FRAME_HEADER_BYTES)
        return all_zero(p, avail) ? FRAME_ZERO : FRAME_BAD_HEAD;
    enum frame_state st = wal_head_state(p, salt, h);
    if (st != FRAME_OK)
        return st;
    if (h->body > avail - WAL_FRAME_HEADER_BYTES)
        return FRAME_BAD_BODY;
    if (XXH3_64bits_withSeed(p + WAL_FRAME_HEADER_BYTES, h->body, salt) != h->body_sum)
        return FRAME_BAD_BODY;
    return FRAME_OK;
}

/* Decompress (when needed) and decode every record of a checked frame, calling apply(arg, lsn,
 * rec) for those after skip_lsn. *raw / *raw_cap: a buffer reused across frames. CS_ECORRUPT on
 * a malformed body; apply's error otherwise. */
int wal_frame_decode(const uint8_t *p, const struct frame_hdr *h, uint64_t skip_lsn, uint8_t **raw,
                     size_t *raw_cap, wal_apply_fn apply, void *arg, uint64_t *applied)
{
    const uint8_t *body = p + WAL_FRAME_HEADER_BYTES;
    if (h->flags & WAL_FLAG_LZ4) {
        if (*raw_cap < h->raw || !*raw) {
            uint8_t *n = realloc(*raw, h->raw ? h->raw : 1);
            if (!n)
                return -ENOMEM;
            *raw = n;
            *raw_cap = h->raw;
        }
        int got = LZ4_decompress_safe((const char *)body, (char *)*raw, (int)h->body, (int)h->raw);
        if (got < 0 || (uint32_t)got != h->raw)
            return CS_ECORRUPT;
        body = *raw;
    }
    /* the whole body is checked before any record is applied: a frame is applied whole or not
     * at all (salvage cuts a malformed frame; none of its records may stay applied) */
    size_t pos = 0;
    for (uint32_t i = 0; i < h->records; i++) {
        struct wal_rec rec;
        if (wal_rec_decode(body, h->raw, &pos, &rec))
            return CS_ECORRUPT;
    }
    if (pos != h->raw)
        return CS_ECORRUPT;
    pos = 0;
    for (uint32_t i = 0; i < h->records; i++) {
        struct wal_rec rec;
        if (wal_rec_decode(body, h->raw, &pos, &rec))
            return CS_ECORRUPT;
        if (h->first_lsn + i <= skip_lsn)
            continue;
        int rc = apply(arg, h->first_lsn + i, &rec);
        if (rc)
            return rc;
        (*applied)++;
    }
    return pos == h->raw ? 0 : CS_ECORRUPT;
}

int wal_frame_check(const uint8_t *p, size_t avail, uint64_t salt, uint64_t *first_lsn,
                    uint32_t *records, size_t *total)
{
    struct frame_hdr h;
    if (wal_frame_state(p, avail, salt, &h) != FRAME_OK)
        return CS_ECORRUPT;
    *first_lsn = h.first_lsn;
    *records = h.records;
    *total = frame_total(&h);
    return 0;
}

int wal_frame_walk(const uint8_t *p, size_t avail, uint64_t salt, wal_apply_fn apply, void *arg)
{
    struct frame_hdr h;
    if (wal_frame_state(p, avail, salt, &h) != FRAME_OK)
        return CS_ECORRUPT;
    uint8_t *raw = NULL;
    size_t cap = 0;
    uint64_t n = 0;
    int rc = wal_frame_decode(p, &h, 0, &raw, &cap, apply, arg, &n);
    free(raw);
    return rc;
}

/* ---- segment files ---- */

int wal_seg_path(char *buf, size_t size, const char *dir, uint64_t first_lsn, bool tmp)
{
    int n = snprintf(buf, size, "%s/wal-%016" PRIx64 ".log%s", dir, first_lsn, tmp ? ".tmp" : "");
    return n >= (int)size ? -ENAMETOOLONG : 0;
}

static void seg_header_encode(uint8_t *p, unsigned shard, uint64_t first_lsn, uint64_t size,
                              uint64_t salt, uint64_t prev_end)
{
    memset(p, 0, WAL_SEGMENT_HEADER_BYTES);
    memcpy(p, WAL_SEG_MAGIC, 8);
    cs_put_le32(p + 8, WAL_VERSION);
    cs_put_le32(p + 12, shard);
    cs_put_le64(p + 16, first_lsn);
    cs_put_le64(p + 24, size);
    cs_put_le64(p + 32, salt);
    cs_put_le64(p + 40, prev_end);
    cs_put_le64(p + 56, XXH3_64bits(p, 56));
}

/* Check a segment header; *salt and *prev_end receive its salt and where the segment before it
 * ends (0: not recorded). CS_EVERSION for another format version. */
int wal_seg_header_check(const uint8_t *p, unsigned shard, uint64_t first_lsn, uint64_t *salt,
                         uint64_t *prev_end)
{
    if (memcmp(p, WAL_SEG_MAGIC, 8) != 0 || cs_get_le64(p + 56) != XXH3_64bits(p, 56))
        return CS_ECORRUPT;
    if (cs_get_le32(p + 8) != WAL_VERSION)
        return CS_EVERSION;
    if (cs_get_le32(p + 12) != shard || cs_get_le64(p + 16) != first_lsn || !all_zero(p + 48, 8))
        return CS_ECORRUPT;
    *salt = cs_get_le64(p + 32);
    *prev_end = cs_get_le64(p + 40);
    return 0;
}

/* A salt no other segment is likely to share: the kernel's random bytes, else time and LSN. */
static uint64_t salt_draw(uint64_t first_lsn)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = XXH3_64bits_withSeed(&ts, sizeof(ts), first_lsn ^ (uint64_t)getpid());
    }
    return v;
}

/* Create, preallocate and sync a new segment, then make it visible; it becomes the append
 * target. */
int wal_seg_create(struct wal *w, uint64_t first_lsn, uint64_t size, uint64_t prev_end)
{
    size = align_io(size);
    char tmp[PATH_MAX], dst[PATH_MAX];
    int rc = wal_seg_path(tmp, sizeof(tmp), w->dir, first_lsn, true);
    if (!rc)
        rc = wal_seg_path(dst, sizeof(dst), w->dir, first_lsn, false);
    if (rc)
        return rc;
    int fd = -1;
    rc = io_file_open(w->fault, tmp, O_RDWR | O_CREAT | O_TRUNC, &fd);
    if (rc)
        return rc;
    uint64_t salt = salt_draw(first_lsn);
    cs_assert(!w->in_flight);
    uint8_t *blk = w->slot[w->open ^ 1u].io; /* free: nothing is in flight */
    memset(blk, 0, WAL_IO_ALIGN);
    seg_header_encode(blk, w->shard, first_lsn, size, salt, prev_end);
    rc = io_file_preallocate(w->fault, fd, size);
    if (!rc)
        rc = io_file_pwrite(w->fault, fd, blk, WAL_IO_ALIGN, 0);
    if (!rc)
        rc = io_file_sync(w->fault, fd);
    if (!rc)
        rc = io_file_rename(w->fault, tmp, dst);
    if (!rc)
        rc = io_dir_sync(w->fault, w->dir);
    if (rc) {
        io_file_close(fd);
        io_file_discard(w->fault, tmp);
        return rc;
    }
    io_file_close(w->fd);
    w->fd = fd;
    w->seg_first_lsn = first_lsn;
    w->seg_size = size;
    w->seg_off = WAL_IO_ALIGN;
    w->seg_salt = salt;
    w->segments++;
    w->zeroed_end = WAL_IO_ALIGN; /* the header's block was written whole */
    w->direct = io_file_direct(fd) == 0;
    return 0;
}

static int lsn_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int seg_list_entry(void *arg, const char *name)
{
    struct seg_list *l = arg;
    uint64_t lsn;
    char tail[8];
    int n = sscanf(name, "wal-%16" SCNx64 ".lo%7s", &lsn, tail);
    if (n != 2 || strlen(name) < 24 || strncmp(name + 20, ".log", 4) != 0)
        return 0;
    if (strcmp(name + 20, ".log.tmp") == 0) {
        if (!l->readonly) {
            char path[PATH_MAX];
            if (snprintf(path, sizeof(path), "%s/%s", l->w->dir, name) < (int)sizeof(path))
                io_file_discard(l->w->fault, path);
        }
        return 0;
    }
    if (strcmp(name + 20, ".log") != 0)
        return 0;
    if (l->count == WAL_SEGMENTS_MAX)
        return CS_EFULL;
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        uint64_t *p = realloc(l->lsn, cap * sizeof(uint64_t));
        if (!p)
            return -ENOMEM;
        l->lsn = p;
        l->cap = cap;
    }
    l->lsn[l->count++] = lsn;
    return 0;
}

/* List the segments of the log's folder in LSN order; remove leftover .tmp segments (never made
 * visible) unless readonly. */
int wal_seg_list_read(struct wal *w, bool readonly, struct seg_list *out)
{
    memset(out, 0, sizeof(*out));
    out->w = w;
    out->readonly = readonly;
    int rc = io_dir_list(w->fault, w->dir, seg_list_entry, out);
    if (rc) {
        free(out->lsn);
        out->lsn = NULL;
        out->count = 0;
        return rc;
    }
    if (out->count) /* lsn is NULL when the folder holds no segment */
        qsort(out->lsn, out->count, sizeof(uint64_t), lsn_cmp);
    return 0;
}

/* Make s->io big enough for a frame of raw_cap raw bytes laid out for writing: the frame's
 * blocks, then zeros up to WAL_ZERO_AHEAD_BYTES past them (and a block to spare). A sealed frame
 * is never longer than the raw records it holds. */
int wal_slot_io_reserve(struct wal_slot *s, size_t raw_cap)
{
    size_t need = align_io(raw_cap + WAL_FRAME_HEADER_BYTES) + WAL_ZERO_AHEAD_BYTES + WAL_IO_ALIGN;
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

int wal_slot_init(struct wal *w, struct wal_slot *s)
{
    memset(s, 0, sizeof(*s));
    s->raw_cap = 64 * 1024;
    s->raw = cs_mem_alloc(w->arena, s->raw_cap);
    if (!s->raw)
        return -ENOMEM;
    s->raw_len = WAL_FRAME_HEADER_BYTES;
    return wal_slot_io_reserve(s, s->raw_cap);
}

void wal_slot_reset(struct wal_slot *s)
{
    s->raw_len = WAL_FRAME_HEADER_BYTES;
    s->first_lsn = 0;
    s->last_lsn = 0;
    s->records = 0;
    s->batch_mark = 0;
}

void wal_close(struct wal *w)
{
    io_file_close(w->fd);
    w->fd = -1;
    for (int i = 0; i < 2; i++) {
        cs_mem_free(w->slot[i].raw);
        free(w->slot[i].io);
        w->slot[i].raw = NULL;
        w->slot[i].io = NULL;
    }
}

/* ---- appending ---- */

static int slot_reserve(struct wal *w, struct wal_slot *s, size_t more)
{
    size_t need = s->raw_len + more;
    if (need <= s->raw_cap)
        return 0;
    size_t cap = s->raw_cap;
    while (cap < need)
        cap *= 2;
    if (wal_slot_io_reserve(s, cap))
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

void wal_group_begin(struct wal *w, const void *key, size_t klen)
{
    struct wal_slot *s = &w->slot[w->open];
    cs_assert(s->batch_mark == 0 && klen <= CS_KEY_MAX);
    slot_assert_room(s, WAL_RECORD_HEADER_BYTES + klen);
    s->batch_mark = s->raw_len;
    s->batch_klen = klen;
    if (klen)
        memcpy(s->raw + s->raw_len + WAL_RECORD_HEADER_BYTES, key, klen);
    s->raw_len += WAL_RECORD_HEADER_BYTES + klen;
}

void wal_batch_begin(struct wal *w)
{
    wal_group_begin(w, NULL, 0);
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

uint64_t wal_group_end(struct wal *w, uint8_t type)
{
    struct wal_slot *s = &w->slot[w->open];
    cs_assert(s->batch_mark != 0);
    size_t nested = s->raw_len - s->batch_mark - WAL_RECORD_HEADER_BYTES - s->batch_klen;
    uint8_t *p = s->raw + s->batch_mark;
    p[0] = type;
    p[1] = 0;
    cs_put_le16(p + 2, (uint16_t)s->batch_klen);
    cs_put_le32(p + 4, 0);
    cs_put_le32(p + 8, (uint32_t)nested);
    s->batch_mark = 0;
    s->batch_klen = 0;
    return slot_take_lsn(w, s);
}

uint64_t wal_batch_end(struct wal *w)
{
    return wal_group_end(w, WAL_BATCH);
}

size_t wal_open_bytes(const struct wal *w)
{
    return w->slot[w->open].raw_len - WAL_FRAME_HEADER_BYTES;
}

/* Lay the open slot's frame out in s->io as whole blocks, compressing the body when that pays:
 * header, body, zeros to the end of its last block, or to WAL_ZERO_AHEAD_BYTES past it when
 * the blocks ahead are still unwritten (see the top comment). Fills h and io. */
static void frame_build(struct wal *w, struct wal_slot *s, uint64_t durable_lsn,
                        struct frame_hdr *h, struct wal_io *io)
{
    size_t raw = s->raw_len - WAL_FRAME_HEADER_BYTES;
    const uint8_t *src = s->raw + WAL_FRAME_HEADER_BYTES;
    uint8_t *body = s->io + WAL_FRAME_HEADER_BYTES;
    h->flags = 0;
    h->body = (uint32_t)raw;
    int c = 0;
    if (w->compress_bytes && raw >= w->compress_bytes)
        c = LZ4_compress_default((const char *)src, (char *)body, (int)raw,
                                 (int)(raw - WAL_COMPRESS_GAIN_MIN));
    if (c > 0) {
        h->flags = WAL_FLAG_LZ4;
        h->body = (uint32_t)c;
    } else {
        memcpy(body, src, raw);
    }
    h->first_lsn = s->first_lsn;
    h->records = s->records;
    h->raw = (uint32_t)raw;
    h->durable_lsn = durable_lsn;
    h->body_sum = XXH3_64bits_withSeed(body, h->body, w->seg_salt);
    frame_hdr_encode(s->io, h, w->seg_salt);
    size_t used = WAL_FRAME_HEADER_BYTES + h->body;
    uint64_t off = w->seg_off;
    uint64_t end = off + frame_total(h);
    /* segments this module creates have whole blocks; one from elsewhere may end mid-block */
    uint64_t seg_end = w->seg_size & ~(uint64_t)(WAL_IO_ALIGN - 1);
    if (w->zeroed_end < seg_end && end + WAL_ZERO_AHEAD_BYTES / 2 > w->zeroed_end)
        end = cs_max_u64(end, cs_min_u64(seg_end, end + WAL_ZERO_AHEAD_BYTES));
    size_t len = (size_t)(end - off);
    cs_assert(len + WAL_IO_ALIGN <= s->io_cap);
    memset(s->io + used, 0, len - used);
    io->fd = w->fd;
    io->buf = s->io;
    io->len = len;
    io->off = off;
    io->frame_bytes = used;
}

int wal_seal(struct wal *w, uint64_t durable_lsn, struct wal_io *io)
{
    cs_assert(!w->in_flight);
    cs_assert(!w->readonly);
    struct wal_slot *s = &w->slot[w->open];
    cs_assert(s->records > 0);
    cs_assert(s->batch_mark == 0);
    cs_assert(s->raw_len - WAL_FRAME_HEADER_BYTES <= WAL_FRAME_RAW_MAX);
    cs_assert(durable_lsn < s->first_lsn);
    /* room for the frame uncompressed (a compressed one is never longer) */
    uint64_t total_max = align_io(s->raw_len);
    if (w->seg_off + total_max > w->seg_size) {
        /* The old segment's frames are all durable or being synced by the caller's policy;
         * sync it once more before leaving it (async mode may have unsynced bytes). */
        int rc = io_file_sync(w->fault, w->fd);
        uint64_t size = cs_max_u64(w->segment_bytes, WAL_IO_ALIGN + total_max);
        if (!rc)
            rc = wal_seg_create(w, s->first_lsn, size, w->seg_off);
        if (rc)
            return rc;
    }
    struct frame_hdr h;
    frame_build(w, s, durable_lsn, &h, io);
    io->last_lsn = s->last_lsn;
    io->raw_bytes = h.raw;
    io->records = s->records;
    w->seg_off += frame_total(&h);
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
    wal_slot_reset(&w->slot[w->open ^ 1u]);
    if (w->flight_end > w->zeroed_end)
        w->zeroed_end = w->flight_end;
}

void wal_discard_open(struct wal *w)
{
    struct wal_slot *s = &w->slot[w->open];
    cs_assert(s->batch_mark == 0);
    if (s->records)
        w->next_lsn = s->first_lsn;
    wal_slot_reset(s);
}

void wal_rewind(struct wal *w, const struct wal_io *io)
{
    cs_assert(w->in_flight);
    struct wal_slot *flight = &w->slot[w->open ^ 1u];
    cs_assert(flight->last_lsn == io->last_lsn);
    cs_assert(io->fd == w->fd);
    w->next_lsn = flight->first_lsn;
    w->seg_off = io->off;
    w->in_flight = false;
    wal_slot_reset(flight);
    wal_slot_reset(&w->slot[w->open]);
}

int wal_drop_before(struct wal *w, uint64_t lsn)
{
    struct seg_list segs;
    int rc = wal_seg_list_read(w, false, &segs);
    if (rc)
        return rc;
    size_t dropped = 0;
    /* Segment i holds LSNs [lsn[i], lsn[i+1]): all covered when lsn[i+1] <= lsn + 1. */
    for (size_t i = 0; i + 1 < segs.count && !rc; i++) {
        if (segs.lsn[i + 1] > lsn + 1 || segs.lsn[i] == w->seg_first_lsn)
            break;
        char path[PATH_MAX];
        rc = wal_seg_path(path, sizeof(path), w->dir, segs.lsn[i], false);
        if (!rc)
            rc = io_file_unlink(w->fault, path);
        if (!rc)
            dropped++;
    }
    free(segs.lsn);
    w->segments -= dropped;
    if (dropped && !rc)
        rc = io_dir_sync(w->fault, w->dir);
    return rc;
}
