/* libFuzzer target for the WAL frame and record decoder (shards/wal.c): wal_frame_check,
 * wal_frame_walk and wal_rec_decode. Built and run by `make fuzz`.
 *
 * Input: byte 0 selects the mode, bytes 1..8 are the segment salt (little-endian), the rest is
 * the frame image (header, body, padding) as it would lie in a segment.
 *   - mode bit 0 set: before the checks, the harness rewrites the body checksum (over as many
 *     body bytes as the header claims, when the image holds them) and then the header checksum,
 *     both seeded with the salt, so that random headers and bodies get past the checksums and the
 *     fuzzer reaches the header rules, LZ4 and the record decoder;
 *   - mode bit 1 set: the rest is also decoded as a bare sequence of records with wal_rec_decode
 *     (as a batch's value is), nested batches one level deep.
 *
 * Properties checked: the functions return 0 or CS_ECORRUPT (-ENOMEM aside) and never read
 * outside the image (ASan); a frame that wal_frame_walk accepts passed wal_frame_check, lies
 * within the image, and holds exactly the record count its header says, with consecutive LSNs
 * from the first one it names; every decoded record
 * lies inside the buffer it was decoded from and obeys the record rules (type, lengths). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "cstore.h"
#include "shards/wal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_RECORDS_MAX 100000u /* records decoded from one bare sequence */

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Rewrite the body checksum (offset 40) and the header checksum (offset 48) of the frame at f. */
static void fix_frame(uint8_t *f, size_t len, uint64_t salt)
{
    if (len < WAL_FRAME_HEADER_BYTES)
        return;
    uint32_t body = get32(f + 20);
    if (body <= len - WAL_FRAME_HEADER_BYTES)
        put64(f + 40, XXH3_64bits_withSeed(f + WAL_FRAME_HEADER_BYTES, body, salt));
    put64(f + 48, XXH3_64bits_withSeed(f, 48, salt));
}

/* A decoded record must obey the rules of the top comment of wal.c and lie in buf[0..len). */
static void check_rec(const uint8_t *buf, size_t len, size_t off, const struct wal_rec *rec)
{
    const uint8_t *key = rec->key, *val = rec->val;
    if (off > len || key < buf || val < key || (size_t)(key - buf) + rec->klen > len ||
        (size_t)(val - buf) + rec->vlen > len || rec->klen > CS_KEY_MAX)
        abort();
    if (rec->type < WAL_PUT || rec->type > WAL_COLL_DROP)
        abort();
    if ((rec->type == WAL_PUT || rec->type == WAL_DEL) && rec->klen == 0)
        abort();
    if (rec->type == WAL_PUT && rec->vlen > CS_VALUE_MAX)
        abort();
}

/* Decode buf[0..len) as a sequence of records; a batch's value is walked the same way (depth
 * limits the nesting). Returns the records decoded. */
static uint64_t decode_seq(const uint8_t *buf, size_t len, int depth)
{
    size_t off = 0;
    uint64_t n = 0;
    while (off < len && n < FUZZ_RECORDS_MAX) {
        struct wal_rec rec;
        size_t before = off;
        int rc = wal_rec_decode(buf, len, &off, &rec);
        if (rc == CS_ECORRUPT) {
            if (off != before) /* a refused record leaves *off alone */
                abort();
            break;
        }
        if (rc != 0 || off <= before)
            abort();
        check_rec(buf, len, off, &rec);
        n++;
        if (rec.type == WAL_BATCH && depth > 0)
            n += decode_seq(rec.val, rec.vlen, depth - 1);
    }
    return n;
}

struct walk {
    uint64_t next_lsn; /* LSN the next record must have */
    uint64_t records;  /* records the walk saw */
    uint64_t sum;      /* a value over every byte, so that ASan sees each one read */
};

static int on_rec(void *arg, uint64_t lsn, const struct wal_rec *rec)
{
    struct walk *w = arg;
    if (lsn != w->next_lsn || rec->type < WAL_PUT || rec->type > WAL_COLL_DROP ||
        rec->klen > CS_KEY_MAX)
        abort();
    w->next_lsn++;
    const uint8_t *k = rec->key, *v = rec->val;
    for (size_t i = 0; i < rec->klen; i++)
        w->sum += k[i];
    for (size_t i = 0; i < rec->vlen; i++)
        w->sum += v[i];
    if (rec->type == WAL_BATCH)
        w->sum += decode_seq(rec->val, rec->vlen, 0);
    w->records++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 9)
        return 0;
    uint8_t mode = data[0];
    uint64_t salt = get64(data + 1);
    size_t len = size - 9;
    uint8_t *f = malloc(len ? len : 1); /* exactly the image: ASan sees any read past it */
    if (!f)
        return 0;
    memcpy(f, data + 9, len);
    if (mode & 1)
        fix_frame(f, len, salt);
    if (mode & 2)
        decode_seq(f, len, 1);
    uint64_t first_lsn = 0;
    uint32_t records = 0;
    size_t total = 0;
    int checked = wal_frame_check(f, len, salt, &first_lsn, &records, &total);
    if (checked != 0 && checked != CS_ECORRUPT)
        abort();
    if (checked == 0) {
        /* the frame's header and body lie in the image; total rounds them up to a block */
        if (records == 0 || first_lsn == 0 || total % WAL_IO_ALIGN != 0 ||
            total < WAL_FRAME_HEADER_BYTES + (size_t)get32(f + 20) ||
            WAL_FRAME_HEADER_BYTES + (size_t)get32(f + 20) > len)
            abort();
    }
    struct walk w = {.next_lsn = first_lsn};
    int rc = wal_frame_walk(f, len, salt, on_rec, &w);
    if (rc != 0 && rc != CS_ECORRUPT && rc != -ENOMEM)
        abort();
    if (rc == 0 && (checked != 0 || w.records != records))
        abort();
    free(f);
    return 0;
}
