/* libFuzzer target for the checkpoint reader (shards/checkpoint.c) through ckpt_load_image, which
 * applies to a memory image exactly the checks and the loading that recovery applies to a file
 * snap-<lsn>. Built and run by `make fuzz`.
 *
 * Input: byte 0 selects the mode, the rest is the checkpoint image (header, blocks, footer). The
 * shard is 0 and the LSN the one the image's header holds, as if the file were named after it.
 *   - mode bit 0 set: before loading, the harness walks the blocks as the reader does and
 *     rewrites each block's payload checksum, the footer's block count, block checksum and
 *     offset, and the header and footer checksums, so that random images get past the checksums
 *     and the fuzzer reaches the entry parser and LZ4;
 *   - mode bit 1 set: load with CKPT_LOAD_SALVAGE.
 *
 * Properties checked: the result is 0 or CS_ECORRUPT (-ENOMEM aside) and the reader never reads
 * outside the image (ASan); collections and records handed to the callbacks obey the limits
 * (name 1..CS_NAME_MAX bytes, key 1..CS_KEY_MAX, value <= CS_VALUE_MAX), records come after a
 * collection; the callbacks refuse keys out of order with CS_ECORRUPT, as the shard's tree
 * loader does, and the reader must turn that into a failed load. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "cstore.h"
#include "shards/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HEADER_BYTES 64u       /* checkpoint header */
#define FOOTER_BYTES 64u       /* checkpoint footer */
#define BLOCK_HEADER_BYTES 32u /* block header */
#define BLOCK_MAGIC 0x4b425343u

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static void put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

/* Rewrite every checksum of the image, and the footer's block count and offset. */
static void fix_image(uint8_t *p, size_t size)
{
    if (size < HEADER_BYTES + FOOTER_BYTES)
        return;
    put64(p + 56, XXH3_64bits(p, 56));
    size_t foff = size - FOOTER_BYTES, off = HEADER_BYTES;
    uint64_t blocks = 0;
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        abort();
    XXH3_64bits_reset(st);
    while (foff - off >= BLOCK_HEADER_BYTES && get32(p + off) == BLOCK_MAGIC) {
        uint32_t stored = get32(p + off + 12);
        if (stored > foff - off - BLOCK_HEADER_BYTES)
            break;
        uint64_t sum = XXH3_64bits(p + off + BLOCK_HEADER_BYTES, stored);
        put64(p + off + 24, sum);
        XXH3_64bits_update(st, &sum, sizeof(sum));
        off += BLOCK_HEADER_BYTES + stored;
        blocks++;
    }
    uint8_t *f = p + foff;
    put64(f + 8, blocks);
    put64(f + 32, XXH3_64bits_digest(st));
    put64(f + 40, foff);
    put64(f + 56, XXH3_64bits(f, 56));
    XXH3_freeState(st);
}

struct seen {
    bool in_coll;             /* a collection was announced */
    uint8_t last[CS_KEY_MAX]; /* previous key of the collection */
    size_t last_len;          /* its length (0: none yet) */
    uint64_t sum;             /* over every byte handed over, so ASan sees each one read */
};

static int on_coll(void *arg, uint32_t id, const char *name, size_t len)
{
    struct seen *s = arg;
    (void)id;
    if (len == 0 || len > CS_NAME_MAX)
        abort();
    for (size_t i = 0; i < len; i++)
        s->sum += (uint8_t)name[i];
    s->in_coll = true;
    s->last_len = 0;
    return 0;
}

static int on_rec(void *arg, const void *key, size_t klen, const void *val, size_t vlen,
                  uint64_t expire_ms)
{
    (void)expire_ms;
    struct seen *s = arg;
    if (!s->in_coll || klen == 0 || klen > CS_KEY_MAX || vlen > CS_VALUE_MAX)
        abort();
    const uint8_t *k = key, *v = val;
    for (size_t i = 0; i < vlen; i++)
        s->sum += v[i];
    if (s->last_len) {
        size_t m = klen < s->last_len ? klen : s->last_len;
        int c = memcmp(s->last, k, m);
        if (c > 0 || (c == 0 && s->last_len >= klen))
            return CS_ECORRUPT; /* keys must increase within a collection */
    }
    memcpy(s->last, k, klen);
    s->last_len = klen;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    size_t len = size - 1;
    uint8_t *img = malloc(len ? len : 1); /* exactly the image: ASan sees any read past it */
    if (!img)
        return 0;
    memcpy(img, data + 1, len);
    if (mode & 1)
        fix_image(img, len);
    uint64_t lsn = len >= 24 ? get64(img + 16) : 0;
    struct seen s = {0};
    uint32_t next_coll_id;
    bool salvaged;
    char msg[512];
    unsigned flags = mode & 2 ? CKPT_LOAD_SALVAGE : 0;
    int rc = ckpt_load_image(img, len, 0, lsn, on_coll, on_rec, NULL, &s, &next_coll_id, flags,
                             &salvaged, msg, sizeof(msg));
    if (rc != 0 && rc != CS_ECORRUPT && rc != -ENOMEM)
        abort();
    if (rc == CS_ECORRUPT && msg[0] == '\0') /* an error always says where */
        abort();
    if (salvaged && !(flags & CKPT_LOAD_SALVAGE))
        abort();
    free(img);
    return 0;
}
