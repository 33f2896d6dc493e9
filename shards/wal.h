/* The write-ahead log of one shard: record encoding, group-commit frames, segment files and
 * recovery. The byte layout is documented at the top of wal.c. The shard's event loop owns the
 * I/O submission (io/ring); this module builds frames and says where they go. */
#ifndef CS_WAL_H
#define CS_WAL_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct io_fault;

#define WAL_SEGMENT_HEADER_BYTES 64
#define WAL_FRAME_HEADER_BYTES 56
#define WAL_RECORD_HEADER_BYTES 12
#define WAL_REC_EXPIRY 0x01u            /* record flags (byte 1): an expiry precedes the value */
#define WAL_REC_HAD_EXPIRY 0x02u        /* record flags: a delete of a record that had an expiry */
#define WAL_EXPIRY_BYTES 8u             /* an expiry in a record */
#define WAL_FRAME_RAW_MAX (64u << 20)   /* raw body bytes of one frame: the reader's limit */
#define WAL_FRAME_SOFT_BYTES (1u << 20) /* the writer seals once a frame holds this much */
#define WAL_SEGMENTS_MAX 100000         /* segment files one shard may have */
#define WAL_IO_ALIGN 4096u /* frames and writes start and end on these boundaries (direct I/O) */
#define WAL_ZERO_AHEAD_BYTES (256u << 10) /* zeros written past the log's end (see wal.c) */

enum wal_rec_type {
    WAL_PUT = 1,         /* coll, key, value */
    WAL_DEL = 2,         /* coll, key */
    WAL_BATCH = 3,       /* value = nested PUT/DEL records, applied all-or-nothing */
    WAL_COLL_CREATE = 4, /* coll = new shard-local id, key = collection name */
    WAL_COLL_DROP = 5,   /* coll */
    /* Transactions across shards (shards/txn.c). key = u64 transaction id, u16 participant
     * count n, u16 participant shard indexes[n]; value = nested PUT/DEL records, this shard's
     * writes, applied only when the outcome is commit. */
    WAL_TXN_PREPARE = 6,
    WAL_TXN_COMMIT = 7, /* key = u64 transaction id: apply its PREPARE's writes */
    WAL_TXN_ABORT = 8,  /* key = u64 transaction id: forget its PREPARE */
};

#define WAL_TXN_ID_BYTES 8u
#define WAL_TXN_PARTS_MAX 256u /* participants named in one PREPARE (shards are fewer) */

/* A decoded record: views into the frame it came from. */
struct wal_rec {
    uint8_t type;       /* enum wal_rec_type */
    uint32_t coll;      /* shard-local collection id */
    const void *key;    /* key bytes (or name) */
    size_t klen;        /* key length */
    const void *val;    /* value bytes (or nested records) */
    size_t vlen;        /* value length */
    uint64_t expire_ms; /* puts: the record's expiry, Unix ms; 0 = none (WAL_REC_EXPIRY) */
    bool had_expiry;    /* deletes: the record removed had an expiry (WAL_REC_HAD_EXPIRY) */
};

/* How wal_open treats what it finds. */
enum wal_open_mode {
    WAL_OPEN_NORMAL,  /* cut a torn tail; damage elsewhere is CS_ECORRUPT */
    WAL_OPEN_VERIFY,  /* change nothing on disk (read-only): report a torn tail, fail on damage */
    WAL_OPEN_SALVAGE, /* cut the log at the first damage, wherever it is, and go on */
};

struct wal_config {
    const char *dir;         /* shard folder (borrowed for the call to wal_open only) */
    unsigned shard;          /* shard index, written into segment headers */
    unsigned arena;          /* jemalloc arena for buffers */
    uint64_t segment_bytes;  /* preallocated size of a segment */
    uint32_t compress_bytes; /* compress frame bodies of at least this size; 0 = never */
    struct io_fault *fault;  /* fault plan, or NULL (borrowed for the log's lifetime) */
    uint64_t base_lsn;       /* records up to this LSN are in a checkpoint: skip them */
    enum wal_open_mode mode; /* normal, verify or salvage */
    bool fresh_segment;      /* the last writer may have died with writes in flight: append to a
                                new segment (see "LATE WRITES" in wal.c) */
};

/* Called once per record during recovery, in LSN order. A non-zero return stops recovery and
 * becomes wal_open's result. */
typedef int (*wal_apply_fn)(void *arg, uint64_t lsn, const struct wal_rec *rec);

/* What recovery found. */
struct wal_recovery {
    uint64_t records;           /* records replayed */
    uint64_t frames;            /* frames replayed */
    uint64_t last_lsn;          /* last LSN replayed (0 if none) */
    uint64_t torn_bytes;        /* bytes cut off a torn tail (0 if the log ended cleanly) */
    uint64_t lost_frames;       /* whole frames cut with a tail that was never synced (async) */
    uint64_t skipped_bytes;     /* damaged bytes skipped because a checkpoint covers them */
    uint64_t salvaged_bytes;    /* salvage: bytes dropped from the damaged segment on */
    uint64_t salvaged_segments; /* salvage: later segments removed */
    char
        message[PATH_MAX + 128]; /* on CS_ECORRUPT: file and offset; on a torn tail: what was cut */
};

/* A frame being filled, or written. */
struct wal_slot {
    uint8_t *raw;       /* frame header space + raw records */
    size_t raw_len;     /* bytes used in raw (>= WAL_FRAME_HEADER_BYTES) */
    size_t raw_cap;     /* bytes allocated for raw */
    uint8_t *io;        /* the frame as written: whole blocks, WAL_IO_ALIGN-aligned */
    size_t io_cap;      /* bytes allocated for io (enough for raw_cap, see wal.c) */
    uint64_t first_lsn; /* LSN of the first record (0 while empty) */
    uint64_t last_lsn;  /* LSN of the last record */
    uint32_t records;   /* records in the frame */
    size_t batch_mark;  /* raw_len where an open batch record starts, or 0 */
    size_t batch_klen;  /* key bytes of that record (a prepare's header) */
};

/* One write the caller submits (a sealed frame, within whole WAL_IO_ALIGN blocks). */
struct wal_io {
    int fd;             /* segment file */
    const void *buf;    /* bytes to write (WAL_IO_ALIGN-aligned); valid until wal_io_done() */
    size_t len;         /* bytes to write: a multiple of WAL_IO_ALIGN */
    uint64_t off;       /* file offset: a multiple of WAL_IO_ALIGN */
    size_t frame_bytes; /* the frame's header and body, without padding (<= len) */
    uint64_t last_lsn;  /* durable once this write and its fdatasync complete */
    uint64_t raw_bytes; /* records' bytes before compression (statistics) */
    uint32_t records;   /* records in the frame */
};

struct wal {
    char dir[PATH_MAX];      /* shard folder */
    unsigned shard;          /* shard index */
    unsigned arena;          /* allocation arena */
    uint64_t segment_bytes;  /* size of new segments */
    uint32_t compress_bytes; /* compression threshold */
    struct io_fault *fault;  /* fault plan or NULL */
    int fd;                  /* segment being appended to */
    uint64_t seg_first_lsn;  /* first LSN of that segment */
    uint64_t seg_size;       /* its preallocated size */
    uint64_t seg_off;        /* next append offset in it */
    uint64_t seg_salt;       /* that segment's checksum salt */
    uint64_t zeroed_end;     /* blocks before this offset were written: frames or zeros */
    bool direct;             /* O_DIRECT took (else page-cache writes, same layout) */
    bool readonly;           /* opened to verify: no appends */
    uint64_t flight_off;     /* the sealed frame's write: first byte */
    uint64_t flight_end;     /* and end */
    uint64_t segments;       /* segment files on disk */
    uint64_t next_lsn;       /* LSN the next record gets */
    bool in_flight;          /* a sealed frame is being written */
    unsigned open;           /* index of the slot being filled */
    struct wal_slot slot[2]; /* filled / in flight, swapped at each seal */
};

/* Recover the log in cfg->dir (creating the first segment if there is none), calling apply for
 * every record, then make the log ready for appends. On CS_ECORRUPT, info->message names the file
 * and offset. Errors: CS_ECORRUPT, -errno, or apply's error. */
CS_MUST_CHECK int wal_open(struct wal *w, const struct wal_config *cfg, wal_apply_fn apply,
                           void *arg, struct wal_recovery *info);
void wal_close(struct wal *w);

/* Appending never fails: first reserve room for everything a request will append (-ENOMEM leaves
 * the frame as it was), then change the trees, then append. */
size_t wal_rec_bytes(const struct wal_rec *rec);
CS_MUST_CHECK int wal_reserve(struct wal *w, size_t bytes);
/* Checks a PREPARE record's key (see enum wal_rec_type): 0 with its id and participants, or
 * CS_ECORRUPT. parts may be NULL. */
CS_MUST_CHECK int wal_txn_key_decode(const void *key, size_t klen, uint64_t *id, uint16_t *nparts,
                                     uint16_t *parts);
/* Append one record to the open frame; returns its LSN. */
uint64_t wal_append(struct wal *w, const struct wal_rec *rec);
/* A batch record: begin, add nested PUT/DEL records, then end (one LSN for the batch). */
void wal_batch_begin(struct wal *w);
void wal_batch_add(struct wal *w, const struct wal_rec *rec);
uint64_t wal_batch_end(struct wal *w);
/* The same for a record of any type whose value is nested records (a PREPARE): begin with its
 * key, add the records with wal_batch_add, end with its type. Room: header, key and records. */
void wal_group_begin(struct wal *w, const void *key, size_t klen);
uint64_t wal_group_end(struct wal *w, uint8_t type);

/* Bytes of records in the open frame (0 = nothing to write). */
size_t wal_open_bytes(const struct wal *w);
/* Seal the open frame into io (compressing and checksumming it, moving to a new segment when it
 * does not fit). durable_lsn: the highest LSN known durable now (written into the frame, so that
 * recovery can tell a lost unsynced tail from damage). Only when nothing is in flight and the
 * open frame is not empty. */
CS_MUST_CHECK int wal_seal(struct wal *w, uint64_t durable_lsn, struct wal_io *io);
/* The sealed frame's write finished (successfully). */
void wal_io_done(struct wal *w);
/* Forget the open frame's records (they were rolled back); their LSNs will be reused. */
void wal_discard_open(struct wal *w);
/* The sealed frame io could not be written (ENOSPC): forget it and the open frame, and append
 * the next frame where io would have gone, reusing its LSNs. */
void wal_rewind(struct wal *w, const struct wal_io *io);

/* Remove the segments whose records all have LSNs <= lsn (never the one being appended to), then
 * fsync the folder. */
CS_MUST_CHECK int wal_drop_before(struct wal *w, uint64_t lsn);

/* Check one frame image p[0..avail) of a segment whose salt is salt: 0 and the frame's first LSN,
 * record count and byte length (header, body, padding) when header and body are valid;
 * CS_ECORRUPT otherwise. For tests and fuzzing; recovery uses the same checks. */
CS_MUST_CHECK int wal_frame_check(const uint8_t *p, size_t avail, uint64_t salt,
                                  uint64_t *first_lsn, uint32_t *records, size_t *total);
/* Decode and walk every record of a valid frame (as wal_frame_check passed it), calling apply
 * with each record's LSN; CS_ECORRUPT on a malformed body. For tests and fuzzing. */
CS_MUST_CHECK int wal_frame_walk(const uint8_t *p, size_t avail, uint64_t salt, wal_apply_fn apply,
                                 void *arg);

/* Decode the record at *off of buf[0..len) and advance *off. CS_ECORRUPT on any bad length or
 * type. Used by recovery and to walk a batch's nested records. */
CS_MUST_CHECK int wal_rec_decode(const uint8_t *buf, size_t len, size_t *off, struct wal_rec *rec);

#endif
