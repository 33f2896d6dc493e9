/* Checkpoints of one shard.
 *
 * A checkpoint is the content of every collection of a shard as of one LSN, written from O(1)
 * copy-on-write snapshots by a helper thread while the shard goes on serving (the shard takes the
 * snapshots, which is O(collections); nothing else stops). Recovery loads the newest checkpoint
 * and replays the WAL records after its LSN, so WAL segments it covers can be removed.
 *
 * FILE `snap-<lsn, 16 hex>` (written as `.tmp`, fsynced, renamed, folder fsynced; little-endian)
 *
 * HEADER (64 bytes, offset 0)
 *    0   8  magic "CSSNAP01"
 *    8   4  format version (3; versions 1 (without transaction entries) and 2 (without
 *           records with an expiry) are read too)
 *   12   4  shard index
 *   16   8  LSN: every record with an LSN <= this is in the file, none after it
 *   24   4  next collection id of the shard
 *   28  28  zero
 *   56   8  XXH3_64 of bytes 0..55
 *
 * BLOCKS, back to back after the header; each one:
 *    0   4  magic "CSBK"
 *    4   4  flags: bit 0 = payload LZ4-compressed
 *    8   4  raw payload bytes (<= CKPT_BLOCK_RAW_MAX)
 *   12   4  stored payload bytes
 *   16   4  entries in the payload
 *   20   4  zero
 *   24   8  XXH3_64 of the stored payload
 *   32   -  payload
 *   The raw payload is a sequence of entries:
 *     collection: u8 1, u8 name bytes, u32 id, name       (starts a collection)
 *     record:     u8 2, u16 key bytes, u32 value bytes, key, value  (belongs to the last
 *                 collection; keys strictly increasing within it)
 *     record with an expiry: u8 5, u16 key bytes, u32 value bytes, u64 expiry (Unix ms, not 0),
 *                 key, value (version 3; otherwise as a record). Records already expired when
 *                 the shard took the checkpoint's snapshots (ckpt_job.now_ms) are left out: the
 *                 WAL deletes of expired records carry a flag that lets replay find them
 *                 missing (see wal.c).
 *     transaction: u8 3, u32 bytes, payload   (version 2; after every collection: a transaction
 *                 prepared or settling on the shard at the checkpoint's LSN; payload in
 *                 shards/txn.c)
 *     transaction write: u8 4, u32 bytes, payload (version 2; a write of the last transaction)
 *
 * FOOTER (64 bytes, right after the last block)
 *    0   8  magic "CSSNAPFT"
 *    8   8  blocks
 *   16   8  collections
 *   24   8  records
 *   32   8  XXH3_64 over the block checksums, in order
 *   40   8  offset of the footer (= file bytes before it)
 *   48   8  transaction entries (types 3 and 4; zero in version 1)
 *   56   8  XXH3_64 of bytes 0..55
 *
 * VALIDITY. Every checksum must match, every length must stay inside its block and file, the
 * counts in the footer must equal what the blocks hold, and the footer must end the file. Anything
 * else is CS_ECORRUPT naming the file and offset: a damaged checkpoint is never half-loaded.
 *
 * TWO GENERATIONS. Publishing a checkpoint keeps the one before it (and the shard keeps the WAL
 * since that one), so that a checkpoint found damaged at recovery costs nothing: each file is
 * first checked whole (header, every block checksum, footer) without being loaded, newest first,
 * and the first that passes is loaded; the WAL is then replayed from its LSN. */
#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "cstore.h"
#include "endian.h"
#include "io/file.h"

#define CKPT_MAGIC "CSSNAP01"
#define CKPT_FOOTER_MAGIC "CSSNAPFT"
#define CKPT_BLOCK_MAGIC 0x4b425343u /* "CSBK" */
#define CKPT_VERSION 3u
#define CKPT_ENTRY_TXN 3u
#define CKPT_ENTRY_TXN_WRITE 4u
#define CKPT_TXN_ENTRY_MAX (CS_KEY_MAX + CS_VALUE_MAX + 64u) /* payload bytes */
#define CKPT_HEADER_BYTES 64u
#define CKPT_FOOTER_BYTES 64u
#define CKPT_BLOCK_HEADER_BYTES 32u
#define CKPT_BLOCK_TARGET (1u << 20) /* a block is closed once its payload reaches this */
#define CKPT_BLOCK_RAW_MAX (CKPT_BLOCK_TARGET + CS_KEY_MAX + CS_VALUE_MAX + 64u)
#define CKPT_ENTRY_COLL 1u
#define CKPT_ENTRY_REC 2u
#define CKPT_ENTRY_REC_EXP 5u
#define CKPT_FLAG_LZ4 1u

static int ckpt_path(char *buf, size_t size, const char *dir, uint64_t lsn, bool tmp)
{
    int n = snprintf(buf, size, "%s/snap-%016" PRIx64 "%s", dir, lsn, tmp ? ".tmp" : "");
    return n >= (int)size ? -ENAMETOOLONG : 0;
}

/* ---- writing ---- */

struct writer {
    struct io_fault *f; /* fault plan or NULL */
    int fd;             /* the .tmp file */
    uint64_t off;       /* where the next block goes */
    uint8_t *raw;       /* block payload being filled */
    size_t raw_len;     /* bytes in raw */
    uint32_t entries;   /* entries in raw */
    uint8_t *out;       /* header + compressed payload */
    size_t out_cap;     /* bytes of out */
    uint64_t blocks;    /* blocks written */
    XXH3_state_t *sums; /* running hash of the block checksums */
};

static int writer_flush(struct writer *w)
{
    if (w->raw_len == 0)
        return 0;
    uint8_t *hdr = w->out;
    int c = LZ4_compress_default((const char *)w->raw, (char *)w->out + CKPT_BLOCK_HEADER_BYTES,
                                 (int)w->raw_len, (int)(w->out_cap - CKPT_BLOCK_HEADER_BYTES));
    uint32_t flags = 0;
    size_t stored = w->raw_len;
    if (c > 0 && (size_t)c < w->raw_len) {
        flags = CKPT_FLAG_LZ4;
        stored = (size_t)c;
    } else {
        memcpy(w->out + CKPT_BLOCK_HEADER_BYTES, w->raw, w->raw_len);
    }
    uint64_t sum = XXH3_64bits(w->out + CKPT_BLOCK_HEADER_BYTES, stored);
    memset(hdr, 0, CKPT_BLOCK_HEADER_BYTES);
    cs_put_le32(hdr, CKPT_BLOCK_MAGIC);
    cs_put_le32(hdr + 4, flags);
    cs_put_le32(hdr + 8, (uint32_t)w->raw_len);
    cs_put_le32(hdr + 12, (uint32_t)stored);
    cs_put_le32(hdr + 16, w->entries);
    cs_put_le64(hdr + 24, sum);
    uint8_t le[8]; /* the footer's sum is over the block checksums as stored: little-endian */
    cs_put_le64(le, sum);
    XXH3_64bits_update(w->sums, le, sizeof(le));
    int rc = io_file_pwrite(w->f, w->fd, w->out, CKPT_BLOCK_HEADER_BYTES + stored, w->off);
    if (rc)
        return rc;
    w->off += CKPT_BLOCK_HEADER_BYTES + stored;
    w->blocks++;
    w->raw_len = 0;
    w->entries = 0;
    return 0;
}

static int writer_add(struct writer *w, const void *head, size_t hlen, const void *a, size_t alen,
                      const void *b, size_t blen)
{
    if (w->raw_len >= CKPT_BLOCK_TARGET) {
        int rc = writer_flush(w);
        if (rc)
            return rc;
    }
    cs_assert(w->raw_len + hlen + alen + blen <= CKPT_BLOCK_RAW_MAX);
    memcpy(w->raw + w->raw_len, head, hlen);
    if (alen)
        memcpy(w->raw + w->raw_len + hlen, a, alen);
    if (blen)
        memcpy(w->raw + w->raw_len + hlen + alen, b, blen);
    w->raw_len += hlen + alen + blen;
    w->entries++;
    return 0;
}

static int write_coll(struct writer *w, const struct ckpt_coll *c, uint64_t now_ms,
                      uint64_t *records)
{
    uint8_t h[6] = {CKPT_ENTRY_COLL, c->name_len};
    cs_put_le32(h + 2, c->id);
    int rc = writer_add(w, h, sizeof(h), c->name, c->name_len, NULL, 0);
    struct btree_cursor cur;
    btree_cursor_init(&cur, &c->snap);
    for (bool on = btree_cursor_first(&cur); on && !rc; on = btree_cursor_next(&cur)) {
        const void *k, *v;
        size_t kl, vl;
        btree_cursor_get(&cur, &k, &kl, &v, &vl);
        uint64_t exp = btree_cursor_expiry(&cur);
        if (cs_expired_at(exp, now_ms))
            continue; /* expired: readers see no record, so neither does the checkpoint */
        uint8_t r[15] = {exp ? CKPT_ENTRY_REC_EXP : CKPT_ENTRY_REC};
        cs_put_le16(r + 1, (uint16_t)kl);
        cs_put_le32(r + 3, (uint32_t)vl);
        if (exp)
            cs_put_le64(r + 7, exp);
        rc = writer_add(w, r, exp ? 15u : 7u, k, kl, v, vl);
        (*records)++;
    }
    return rc;
}

static void header_encode(uint8_t *h, const struct ckpt_job *job)
{
    memset(h, 0, CKPT_HEADER_BYTES);
    memcpy(h, CKPT_MAGIC, 8);
    cs_put_le32(h + 8, CKPT_VERSION);
    cs_put_le32(h + 12, job->shard);
    cs_put_le64(h + 16, job->lsn);
    cs_put_le32(h + 24, job->next_coll_id);
    cs_put_le64(h + 56, XXH3_64bits(h, 56));
}

static int write_all(struct ckpt_job *job, struct writer *w)
{
    uint8_t h[CKPT_HEADER_BYTES];
    header_encode(h, job);
    int rc = io_file_pwrite(w->f, w->fd, h, sizeof(h), 0);
    w->off = CKPT_HEADER_BYTES;
    for (size_t i = 0; i < job->ncolls && !rc; i++)
        rc = write_coll(w, &job->colls[i], job->now_ms, &job->records);
    uint64_t txns = 0;
    for (size_t off = 0; off < job->txn_len && !rc; txns++) { /* entries as the shard made them */
        size_t n = 5u + cs_get_le32(job->txn + off + 1);
        rc = writer_add(w, job->txn + off, n, NULL, 0, NULL, 0);
        off += n;
    }
    if (!rc)
        rc = writer_flush(w);
    if (rc)
        return rc;
    uint8_t f[CKPT_FOOTER_BYTES];
    memset(f, 0, sizeof(f));
    memcpy(f, CKPT_FOOTER_MAGIC, 8);
    cs_put_le64(f + 8, w->blocks);
    cs_put_le64(f + 16, job->ncolls);
    cs_put_le64(f + 24, job->records);
    cs_put_le64(f + 32, XXH3_64bits_digest(w->sums));
    cs_put_le64(f + 40, w->off);
    cs_put_le64(f + 48, txns);
    cs_put_le64(f + 56, XXH3_64bits(f, 56));
    rc = io_file_pwrite(w->f, w->fd, f, sizeof(f), w->off);
    job->bytes = w->off + sizeof(f);
    return rc ? rc : io_file_sync(w->f, w->fd);
}

int ckpt_write(struct ckpt_job *job)
{
    char path[PATH_MAX];
    int rc = ckpt_path(path, sizeof(path), job->dir, job->lsn, true);
    struct writer w = {.f = job->fault, .fd = -1};
    w.raw = malloc(CKPT_BLOCK_RAW_MAX);
    w.out_cap = CKPT_BLOCK_HEADER_BYTES + (size_t)LZ4_compressBound(CKPT_BLOCK_RAW_MAX);
    w.out = malloc(w.out_cap);
    w.sums = XXH3_createState();
    if (!rc && (!w.raw || !w.out || !w.sums))
        rc = -ENOMEM;
    if (!rc) {
        XXH3_64bits_reset(w.sums);
        rc = io_file_open(job->fault, path, O_WRONLY | O_CREAT | O_TRUNC, &w.fd);
    }
    job->records = 0;
    if (!rc)
        rc = write_all(job, &w);
    io_file_close(w.fd);
    if (rc && w.fd >= 0)
        io_file_discard(job->fault, path);
    free(w.raw);
    free(w.out);
    XXH3_freeState(w.sums);
    job->rc = rc;
    return rc;
}

/* ---- listing ---- */

#define CKPT_LIST_MAX 16u /* checkpoints one folder is expected to hold (two, plus leftovers) */

struct ckpt_list {
    struct io_fault *f;          /* fault plan or NULL */
    const char *dir;             /* shard folder */
    bool readonly;               /* leave .tmp files and old checkpoints alone */
    uint64_t keep;               /* remove checkpoints older than this (0: none) */
    uint64_t lsn[CKPT_LIST_MAX]; /* checkpoints found (the newest ones when there are more) */
    size_t count;                /* entries of lsn[] */
    int rc;                      /* first removal error */
};

static void list_remove(struct ckpt_list *l, const char *name)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", l->dir, name) >= (int)sizeof(path))
        return;
    int rc = io_file_unlink(l->f, path);
    if (rc && rc != -ENOENT && !l->rc)
        l->rc = rc;
}

static int list_entry(void *arg, const char *name)
{
    struct ckpt_list *l = arg;
    uint64_t lsn;
    if (strncmp(name, "snap-", 5) != 0 || strlen(name) < 21)
        return 0;
    if (sscanf(name + 5, "%16" SCNx64, &lsn) != 1)
        return 0;
    if (strcmp(name + 21, ".tmp") == 0) {
        if (!l->readonly)
            list_remove(l, name);
        return 0;
    }
    if (name[21] != '\0')
        return 0;
    if (l->keep && lsn < l->keep && !l->readonly) {
        list_remove(l, name);
        return 0;
    }
    if (l->count < CKPT_LIST_MAX) {
        l->lsn[l->count++] = lsn;
        return 0;
    }
    size_t low = 0; /* full: keep the newest ones */
    for (size_t i = 1; i < l->count; i++)
        if (l->lsn[i] < l->lsn[low])
            low = i;
    if (lsn > l->lsn[low])
        l->lsn[low] = lsn;
    return 0;
}

static int lsn_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x > y ? -1 : x < y;
}

/* The checkpoints of dir, newest first; removes .tmp leftovers and, with keep != 0, every
 * checkpoint older than keep (unless readonly). */
static int ckpt_scan(struct ckpt_list *l)
{
    l->count = 0;
    l->rc = 0;
    int rc = io_dir_list(l->f, l->dir, list_entry, l);
    if (!rc)
        rc = l->rc;
    qsort(l->lsn, l->count, sizeof(uint64_t), lsn_desc);
    return rc;
}

int ckpt_publish(struct io_fault *f, const char *dir, uint64_t lsn, uint64_t keep_lsn)
{
    char tmp[64], dst[64];
    snprintf(tmp, sizeof(tmp), "snap-%016" PRIx64 ".tmp", lsn);
    snprintf(dst, sizeof(dst), "snap-%016" PRIx64, lsn);
    int rc = io_file_publish(f, dir, tmp, dst);
    struct ckpt_list l = {.f = f, .dir = dir, .keep = keep_lsn < lsn ? keep_lsn : lsn};
    if (!rc && l.keep)
        rc = ckpt_scan(&l);
    if (!rc && l.keep)
        rc = io_dir_sync(f, dir);
    return rc;
}

/* ---- loading ---- */

struct loader {
    const char *path;  /* file being read */
    const uint8_t *p;  /* its bytes */
    size_t size;       /* file bytes */
    ckpt_coll_fn coll; /* consumers */
    ckpt_rec_fn rec;
    ckpt_txn_fn txn; /* NULL: transaction entries are checked, not delivered */
    void *arg;
    uint8_t *raw;     /* decompression buffer */
    bool in_coll;     /* a collection entry was seen */
    uint64_t colls;   /* collections seen */
    uint64_t records; /* records seen */
    uint64_t txns;    /* transaction entries seen */
    uint32_t version; /* of the file being read */
    bool in_txn;      /* a transaction entry was seen */
    char *msg;        /* error message */
    size_t msg_size;
    bool salvage;    /* keep what precedes damage instead of failing */
    bool salvaged;   /* damage was met and skipped */
    bool check_only; /* verify checksums and lengths only: no decompression, no callbacks */
};

static int bad(struct loader *l, uint64_t off, const char *what)
{
    snprintf(l->msg, l->msg_size, "%s in %s at offset %" PRIu64, what, l->path, off);
    return CS_ECORRUPT;
}

static int load_entries(struct loader *l, const uint8_t *q, size_t len, uint32_t n, uint64_t off)
{
    size_t pos = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (pos >= len)
            return bad(l, off, "checkpoint block holds fewer entries than it says");
        int rc;
        if (q[pos] == CKPT_ENTRY_COLL) {
            if (len - pos < 6 || q[pos + 1] == 0 || q[pos + 1] > CS_NAME_MAX ||
                len - pos - 6 < q[pos + 1])
                return bad(l, off, "bad collection entry in checkpoint");
            if (l->in_txn)
                return bad(l, off, "collection entry after a transaction entry in checkpoint");
            rc = l->coll(l->arg, cs_get_le32(q + pos + 2), (const char *)q + pos + 6, q[pos + 1]);
            pos += 6u + q[pos + 1];
            l->in_coll = true;
            l->colls++;
        } else if (q[pos] == CKPT_ENTRY_REC) {
            uint16_t kl;
            if (len - pos < 7 || !l->in_coll)
                return bad(l, off, "bad record entry in checkpoint");
            kl = cs_get_le16(q + pos + 1);
            uint32_t vl = cs_get_le32(q + pos + 3);
            if (kl == 0 || kl > CS_KEY_MAX || vl > CS_VALUE_MAX || len - pos - 7 < kl + (size_t)vl)
                return bad(l, off, "bad record lengths in checkpoint");
            rc = l->rec(l->arg, q + pos + 7, kl, q + pos + 7 + kl, vl, 0);
            pos += 7u + kl + vl;
            l->records++;
        } else if (q[pos] == CKPT_ENTRY_REC_EXP && l->version >= 3) {
            if (len - pos < 15 || !l->in_coll)
                return bad(l, off, "bad record entry in checkpoint");
            uint16_t kl = cs_get_le16(q + pos + 1);
            uint32_t vl = cs_get_le32(q + pos + 3);
            uint64_t exp = cs_get_le64(q + pos + 7);
            if (kl == 0 || kl > CS_KEY_MAX || vl > CS_VALUE_MAX ||
                len - pos - 15 < kl + (size_t)vl || exp == 0)
                return bad(l, off, "bad record lengths or expiry in checkpoint");
            rc = l->rec(l->arg, q + pos + 15, kl, q + pos + 15 + kl, vl, exp);
            pos += 15u + kl + vl;
            l->records++;
        } else if ((q[pos] == CKPT_ENTRY_TXN || q[pos] == CKPT_ENTRY_TXN_WRITE) &&
                   l->version >= 2) {
            uint32_t n32 = len - pos < 5 ? 0 : cs_get_le32(q + pos + 1);
            if (len - pos < 5 || n32 > CKPT_TXN_ENTRY_MAX || len - pos - 5 < n32 ||
                (q[pos] == CKPT_ENTRY_TXN_WRITE && !l->in_txn))
                return bad(l, off, "bad transaction entry in checkpoint");
            l->in_txn = true;
            l->in_coll = false; /* records may not follow */
            rc = l->txn ? l->txn(l->arg, q[pos], q + pos + 5, n32) : 0;
            pos += 5u + n32;
            l->txns++;
        } else {
            return bad(l, off, "unknown entry type in checkpoint");
        }
        if (rc == CS_ECORRUPT)
            return bad(l, off, "checkpoint entry inconsistent with the ones before it");
        if (rc)
            return rc;
    }
    return pos == len ? 0 : bad(l, off, "checkpoint block has bytes after its entries");
}

static int load_blocks(struct loader *l, uint64_t end, uint64_t nblocks, uint64_t *sum)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        return -ENOMEM;
    XXH3_64bits_reset(st);
    uint64_t off = CKPT_HEADER_BYTES, n = 0;
    int rc = 0;
    while (off < end && !rc) {
        const uint8_t *h = l->p + off;
        if (end - off < CKPT_BLOCK_HEADER_BYTES || cs_get_le32(h) != CKPT_BLOCK_MAGIC) {
            rc = bad(l, off, "bad checkpoint block header");
            break;
        }
        uint32_t flags = cs_get_le32(h + 4), raw = cs_get_le32(h + 8), stored = cs_get_le32(h + 12);
        if ((flags & ~CKPT_FLAG_LZ4) || raw > CKPT_BLOCK_RAW_MAX ||
            stored > end - off - CKPT_BLOCK_HEADER_BYTES ||
            (!(flags & CKPT_FLAG_LZ4) && stored != raw)) {
            rc = bad(l, off, "bad checkpoint block lengths");
            break;
        }
        const uint8_t *body = h + CKPT_BLOCK_HEADER_BYTES;
        uint64_t bsum = cs_get_le64(h + 24);
        if (XXH3_64bits(body, stored) != bsum) {
            rc = bad(l, off, "checkpoint block checksum mismatch");
            break;
        }
        XXH3_64bits_update(st, h + 24, 8); /* bsum as stored: little-endian */
        if (l->check_only) {
            off += CKPT_BLOCK_HEADER_BYTES + stored;
            n++;
            continue;
        }
        if (flags & CKPT_FLAG_LZ4) {
            int got =
                LZ4_decompress_safe((const char *)body, (char *)l->raw, (int)stored, (int)raw);
            if (got < 0 || (uint32_t)got != raw) {
                rc = bad(l, off, "checkpoint block does not decompress");
                break;
            }
            body = l->raw;
        }
        rc = load_entries(l, body, raw, cs_get_le32(h + 16), off);
        off += CKPT_BLOCK_HEADER_BYTES + stored;
        n++;
    }
    *sum = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    if (!rc && n != nblocks)
        rc = bad(l, end, "checkpoint holds another number of blocks than its footer says");
    return rc;
}

/* Salvage: keep what was loaded before the damage and say what was dropped. */
static int salvage(struct loader *l)
{
    l->salvaged = true;
    size_t n = strlen(l->msg);
    snprintf(l->msg + n, l->msg_size - n,
             "; salvage kept the %" PRIu64 " records before it and dropped the rest", l->records);
    return 0;
}

static int load_file(struct loader *l, unsigned shard, uint64_t lsn, uint32_t *next_coll_id)
{
    if (l->size < CKPT_HEADER_BYTES + CKPT_FOOTER_BYTES) {
        int rc = bad(l, 0, "checkpoint shorter than its header and footer");
        return l->salvage ? salvage(l) : rc;
    }
    const uint8_t *h = l->p;
    int rc = 0;
    if (memcmp(h, CKPT_MAGIC, 8) != 0 || cs_get_le64(h + 56) != XXH3_64bits(h, 56))
        rc = bad(l, 0, "bad checkpoint header");
    else if (cs_get_le32(h + 8) < 1 || cs_get_le32(h + 8) > CKPT_VERSION ||
             cs_get_le32(h + 12) != shard || cs_get_le64(h + 16) != lsn)
        rc = bad(l, 0, "checkpoint header names another version, shard or LSN");
    l->version = cs_get_le32(h + 8);
    if (rc)
        return l->salvage ? salvage(l) : rc;
    *next_coll_id = cs_get_le32(h + 24);
    uint64_t foff = l->size - CKPT_FOOTER_BYTES;
    const uint8_t *f = l->p + foff;
    if (memcmp(f, CKPT_FOOTER_MAGIC, 8) != 0 || cs_get_le64(f + 56) != XXH3_64bits(f, 56) ||
        cs_get_le64(f + 40) != foff) {
        rc = bad(l, foff, "bad checkpoint footer");
        if (!l->salvage)
            return rc;
        uint64_t sum;
        rc = load_blocks(l, foff, UINT64_MAX, &sum);
        return rc == CS_ECORRUPT || rc == 0 ? salvage(l) : rc;
    }
    uint64_t sum;
    rc = load_blocks(l, foff, cs_get_le64(f + 8), &sum);
    if (rc == CS_ECORRUPT && l->salvage)
        return salvage(l);
    if (rc)
        return rc;
    if (sum != cs_get_le64(f + 32))
        return bad(l, foff, "checkpoint blocks do not match its footer's checksum");
    if (!l->check_only && (l->colls != cs_get_le64(f + 16) || l->records != cs_get_le64(f + 24) ||
                           l->txns != cs_get_le64(f + 48)))
        return bad(l, foff, "checkpoint content does not match its footer");
    return 0;
}

/* Check the image p[0..size) of checkpoint path whole (check_only) or load it. */
static int load_image(struct loader *l, const char *path, const uint8_t *p, size_t size,
                      unsigned shard, uint64_t lsn, uint32_t *next_coll_id)
{
    l->path = path;
    l->p = p;
    l->size = size;
    l->in_coll = l->in_txn = false;
    l->colls = l->records = l->txns = 0;
    int rc = load_file(l, shard, lsn, next_coll_id);
    l->path = NULL;
    l->p = NULL;
    return rc;
}

/* Read checkpoint lsn of dir and check it whole (check_only) or load it. */
static int load_one(struct loader *l, struct io_fault *f, const char *dir, unsigned shard,
                    uint64_t lsn, uint32_t *next_coll_id)
{
    char path[PATH_MAX];
    int rc = ckpt_path(path, sizeof(path), dir, lsn, false);
    if (rc)
        return rc;
    void *buf = NULL;
    size_t size = 0;
    rc = io_file_read_all(f, path, (size_t)1 << 40, &buf, &size);
    if (rc == CS_ECORRUPT) {
        snprintf(l->msg, l->msg_size, "empty checkpoint %s", path);
        return rc;
    }
    if (rc)
        return rc;
    rc = load_image(l, path, buf, size, shard, lsn, next_coll_id);
    cs_mem_free(buf);
    return rc;
}

int ckpt_load(struct io_fault *f, const char *dir, unsigned shard, ckpt_coll_fn coll,
              ckpt_rec_fn rec, ckpt_txn_fn txn, void *arg, uint64_t *lsn, uint32_t *next_coll_id,
              unsigned flags, bool *salvaged, char *msg, size_t msg_size)
{
    *salvaged = false;
    *lsn = 0;
    *next_coll_id = 0;
    msg[0] = '\0';
    struct ckpt_list list = {.f = f, .dir = dir, .readonly = (flags & CKPT_LOAD_READONLY) != 0};
    int rc = ckpt_scan(&list);
    if (rc || list.count == 0)
        return rc;
    struct loader l = {
        .coll = coll, .rec = rec, .txn = txn, .arg = arg, .msg = msg, .msg_size = msg_size};
    l.raw = malloc(CKPT_BLOCK_RAW_MAX);
    if (!l.raw)
        return -ENOMEM;
    /* newest first: the first one whose every checksum holds is loaded */
    char first_msg[PATH_MAX + 128] = "";
    size_t pick = list.count;
    for (size_t i = 0; i < list.count; i++) {
        l.check_only = true;
        uint32_t id;
        rc = load_one(&l, f, dir, shard, list.lsn[i], &id);
        if (rc == 0) {
            pick = i;
            break;
        }
        if (rc != CS_ECORRUPT)
            goto out;
        if (i == 0)
            snprintf(first_msg, sizeof(first_msg), "%s", msg);
    }
    l.check_only = false;
    if (pick < list.count) {
        rc = load_one(&l, f, dir, shard, list.lsn[pick], next_coll_id);
        if (!rc) {
            *lsn = list.lsn[pick];
            if (pick > 0)
                snprintf(msg, msg_size, "%s; loaded the checkpoint before it (LSN %" PRIu64 ")",
                         first_msg, *lsn);
        }
    } else if (flags & CKPT_LOAD_SALVAGE) {
        l.salvage = true;
        rc = load_one(&l, f, dir, shard, list.lsn[0], next_coll_id);
        if (rc == CS_ECORRUPT) { /* an empty file: nothing to keep */
            l.salvaged = true;
            rc = 0;
        }
        if (!rc)
            *lsn = list.lsn[0];
        *salvaged = l.salvaged;
    } else {
        snprintf(msg, msg_size, "%s", first_msg);
        rc = CS_ECORRUPT;
    }
out:
    free(l.raw);
    return rc;
}

int ckpt_load_image(const uint8_t *p, size_t size, unsigned shard, uint64_t lsn, ckpt_coll_fn coll,
                    ckpt_rec_fn rec, ckpt_txn_fn txn, void *arg, uint32_t *next_coll_id,
                    unsigned flags, bool *salvaged, char *msg, size_t msg_size)
{
    cs_assert(p || size == 0);
    cs_assert(msg_size > 0);
    *salvaged = false;
    *next_coll_id = 0;
    msg[0] = '\0';
    struct loader l = {
        .coll = coll, .rec = rec, .txn = txn, .arg = arg, .msg = msg, .msg_size = msg_size};
    l.raw = malloc(CKPT_BLOCK_RAW_MAX);
    if (!l.raw)
        return -ENOMEM;
    /* as ckpt_load does for a file: check it whole, then load it (or salvage it) */
    l.check_only = true;
    uint32_t id;
    int rc = load_image(&l, "checkpoint image", p, size, shard, lsn, &id);
    l.check_only = false;
    if (rc == 0) {
        rc = load_image(&l, "checkpoint image", p, size, shard, lsn, next_coll_id);
    } else if (rc == CS_ECORRUPT && (flags & CKPT_LOAD_SALVAGE)) {
        l.salvage = true;
        rc = load_image(&l, "checkpoint image", p, size, shard, lsn, next_coll_id);
        *salvaged = l.salvaged;
    }
    free(l.raw);
    return rc;
}
