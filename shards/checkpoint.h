/* Checkpoints of one shard: every collection's tree written from copy-on-write snapshots into
 * snap-<lsn>, and read back at recovery. The file layout is documented at the top of
 * checkpoint.c. Writing runs on a helper thread and only reads snapshots; publishing (rename and
 * removal of what the checkpoint covers) is the shard's. */
#ifndef CS_CHECKPOINT_H
#define CS_CHECKPOINT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cstore.h"
#include "shards/btree.h"
#include "util.h"

struct io_fault;

/* One collection to write. */
struct ckpt_coll {
    uint32_t id;                /* shard-local collection id */
    uint8_t name_len;           /* bytes of name */
    char name[CS_NAME_MAX + 1]; /* collection name */
    struct btree_snap snap;     /* its records (held by the shard until the job is done) */
    void *owner;                /* the shard's collection (the shard's business) */
};

struct ckpt_job {
    char dir[PATH_MAX];      /* shard folder */
    struct io_fault *fault;  /* the database's fault plan, or NULL (borrowed) */
    unsigned shard;          /* shard index */
    uint64_t lsn;            /* every record with an LSN <= lsn is in the checkpoint */
    uint32_t next_coll_id;   /* collection id the shard would give next */
    struct ckpt_coll *colls; /* collections */
    size_t ncolls;           /* their count */
    uint8_t *txn;            /* transaction entries (type, u32 length, payload) to write after
                                the collections, as the shard encoded them (malloc), or NULL */
    size_t txn_len;          /* their bytes */
    uint64_t now_ms;         /* records whose expiry is at or before this (Unix ms) are left
                                out: expired (0: write every record) */
    int rc;                  /* result of ckpt_write */
    uint64_t records;        /* records written */
    uint64_t bytes;          /* file bytes written */
};

/* Write dir/snap-<lsn>.tmp and fsync it. Reads only the snapshots, so any thread may run it while
 * the shard keeps writing its trees. Returns 0 or -errno / -ENOMEM (also stored in job->rc). */
CS_MUST_CHECK int ckpt_write(struct ckpt_job *job);
/* Make snap-<lsn>.tmp the checkpoint: rename and fsync the folder; then remove the checkpoints
 * older than keep_lsn (the one before, kept as a fallback should this one be found damaged) and
 * fsync the folder again. */
CS_MUST_CHECK int ckpt_publish(struct io_fault *f, const char *dir, uint64_t lsn,
                               uint64_t keep_lsn);

#define CKPT_LOAD_SALVAGE 1u  /* keep what precedes damage instead of failing */
#define CKPT_LOAD_READONLY 2u /* change nothing on disk (leftover .tmp files stay) */

/* Recovery: load the newest valid checkpoint of dir, if any, calling coll() for each collection
 * (before its records) and rec() for each record, in key order. Checkpoints are checked whole
 * (every checksum, the footer) before anything is loaded: when the newest is damaged, the one
 * before it is loaded instead and msg says so (the WAL since that one is kept for this). *lsn
 * gets the LSN of the one loaded (0 when there is none) and *next_coll_id the id counter it
 * recorded. Leftover .tmp files are removed unless flags hold CKPT_LOAD_READONLY. CS_ECORRUPT
 * when no checkpoint passes the check, or one fails while loading (msg names file and offset) —
 * unless flags hold CKPT_LOAD_SALVAGE: then the records before the damage of the newest are kept,
 * *salvaged is set and msg says what was dropped. */
typedef int (*ckpt_coll_fn)(void *arg, uint32_t id, const char *name, size_t len);
/* rec gets the record's expiry in expire_ms (Unix ms; 0: none). */
typedef int (*ckpt_rec_fn)(void *arg, const void *key, size_t klen, const void *val, size_t vlen,
                           uint64_t expire_ms);
/* A transaction entry (type 3 or 4, payload p[0..len)): see checkpoint.c; txn may be NULL. */
typedef int (*ckpt_txn_fn)(void *arg, uint8_t type, const uint8_t *p, size_t len);
CS_MUST_CHECK int ckpt_load(struct io_fault *f, const char *dir, unsigned shard, ckpt_coll_fn coll,
                            ckpt_rec_fn rec, ckpt_txn_fn txn, void *arg, uint64_t *lsn,
                            uint32_t *next_coll_id, unsigned flags, bool *salvaged, char *msg,
                            size_t msg_size);

/* Check, then load, one checkpoint image p[0..size) held in memory (the bytes of a file
 * snap-<lsn> of shard), as ckpt_load does for the checkpoint it picks: the same checks, the same
 * calls of coll() and rec(), nothing loaded unless the whole image passes the check (with
 * CKPT_LOAD_SALVAGE in flags: the records before the damage, and *salvaged set). p is borrowed
 * for the call. For tests and fuzzing. Errors: CS_ECORRUPT (msg says where), -ENOMEM, or the
 * callbacks' errors. */
CS_MUST_CHECK int ckpt_load_image(const uint8_t *p, size_t size, unsigned shard, uint64_t lsn,
                                  ckpt_coll_fn coll, ckpt_rec_fn rec, ckpt_txn_fn txn, void *arg,
                                  uint32_t *next_coll_id, unsigned flags, bool *salvaged, char *msg,
                                  size_t msg_size);

#endif
