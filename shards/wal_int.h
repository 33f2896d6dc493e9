/* Private interface of the WAL (shards/wal.c writes, shards/wal_recovery.c recovers,
 * shards/wal_reader.c reads a live log): the byte helpers, the frame and segment checks they
 * share. The format is documented at the top of wal.c. Only these three files include it. */
#ifndef CS_WAL_INT_H
#define CS_WAL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "endian.h"
#include "shards/wal.h"

#define WAL_SEG_MAGIC "CSWALSEG"
#define WAL_FRAME_MAGIC 0x52465343u
#define WAL_VERSION 2u
#define WAL_FLAG_LZ4 1u
#define WAL_SEGMENT_BYTES_MIN (1u << 20)
#define WAL_READ_WINDOW (1u << 20) /* bytes recovery reads at a time */
#define WAL_COMPRESS_GAIN_MIN 8u   /* compression must save more than this to be kept */
_Static_assert(WAL_FRAME_HEADER_BYTES % 8 == 0, "frame header keeps alignment");
_Static_assert(WAL_SEGMENT_HEADER_BYTES <= WAL_IO_ALIGN, "segment header fits its block");
_Static_assert(CS_KEY_MAX <= UINT16_MAX, "key length fits the record header");

enum frame_state {
    FRAME_OK,       /* header and body valid */
    FRAME_ZERO,     /* a header of zeros: no frame here */
    FRAME_BAD_HEAD, /* the header fails its checks (its extent is unknown) */
    FRAME_BAD_BODY, /* the header is valid, the body is not (or lies past the segment's end) */
};

struct frame_hdr {
    uint16_t flags;       /* WAL_FLAG_* */
    uint64_t first_lsn;   /* first record's LSN */
    uint32_t records;     /* record count */
    uint32_t body;        /* stored body bytes */
    uint32_t raw;         /* raw body bytes */
    uint64_t durable_lsn; /* durable when sealed */
    uint64_t body_sum;    /* body checksum */
};

struct seg_list {
    struct wal *w; /* for the folder, the fault plan and the mode */
    bool readonly; /* verify: leave .tmp files alone */
    uint64_t *lsn; /* first LSNs, sorted */
    size_t count;  /* entries */
    size_t cap;    /* entries allocated */
};

static inline uint64_t align_io(uint64_t n)
{
    return (n + WAL_IO_ALIGN - 1) & ~(uint64_t)(WAL_IO_ALIGN - 1);
}

static inline bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static inline size_t frame_total(const struct frame_hdr *h)
{
    return (size_t)align_io(WAL_FRAME_HEADER_BYTES + (uint64_t)h->body);
}

static inline uint64_t frame_last(const struct frame_hdr *h)
{
    return h->first_lsn + h->records - 1;
}

enum frame_state wal_frame_state(const uint8_t *p, size_t avail, uint64_t salt,
                                 struct frame_hdr *h);
enum frame_state wal_head_state(const uint8_t *p, uint64_t salt, struct frame_hdr *h);
int wal_frame_decode(const uint8_t *p, const struct frame_hdr *h, uint64_t skip_lsn, uint8_t **raw,
                     size_t *raw_cap, wal_apply_fn apply, void *arg, uint64_t *applied);
int wal_seg_path(char *buf, size_t size, const char *dir, uint64_t first_lsn, bool tmp);
int wal_seg_header_check(const uint8_t *p, unsigned shard, uint64_t first_lsn, uint64_t *salt,
                         uint64_t *prev_end);
int wal_seg_create(struct wal *w, uint64_t first_lsn, uint64_t size, uint64_t prev_end);
int wal_seg_list_read(struct wal *w, bool readonly, struct seg_list *out);
int wal_slot_init(struct wal *w, struct wal_slot *s);
void wal_slot_reset(struct wal_slot *s);
int wal_slot_io_reserve(struct wal_slot *s, size_t raw_cap);

#endif
