/* Reading one shard's live WAL in LSN order from any thread, up to a durable LSN (see
 * wal_reader.c). Records are views valid until the next call. */
#ifndef CS_WAL_READER_H
#define CS_WAL_READER_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shards/wal.h"

struct wal_reader_rec {
    uint64_t lsn;
    struct wal_rec rec;
};

struct wal_reader {
    char dir[PATH_MAX]; /* the shard folder */
    unsigned shard;     /* its index (segment headers name it) */
    int fd;             /* segment being read, -1 when none */
    uint64_t seg_first; /* its first LSN */
    uint64_t salt;      /* its checksum salt */
    uint64_t off;       /* next frame offset in it */
    uint64_t next;      /* LSN of the next record to hand out */
    uint8_t *frame;     /* the frame read */
    size_t cap_frame;
    uint8_t *raw; /* its body, decompressed */
    size_t cap_raw;
    struct wal_reader_rec *recs; /* its records at or after next */
    size_t nrecs, cap_recs, at;
};

/* Position r at the first record with LSN >= from (0: the start) in the log of shard in dir.
 * CS_ENOTFOUND when the folder no longer holds that LSN (a checkpoint removed it), -errno. */
CS_MUST_CHECK int wal_reader_open(struct wal_reader *r, const char *dir, unsigned shard,
                                  uint64_t from);
/* The next record if its LSN is <= limit, a durable LSN (the shard's durable LSN: a frame
 * boundary), 0 with *lsn and *rec; 1 when there is none yet; CS_ECORRUPT (bad bytes),
 * CS_ENOTFOUND, -errno. */
CS_MUST_CHECK int wal_reader_next(struct wal_reader *r, uint64_t limit, uint64_t *lsn,
                                  struct wal_rec *rec);
/* Take back the record the last wal_reader_next returned: the next call returns it again. */
void wal_reader_unread(struct wal_reader *r);
void wal_reader_close(struct wal_reader *r);

#endif
