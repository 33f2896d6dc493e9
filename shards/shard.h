/* The shard runtime: one pinned thread that owns a slice of every collection (its B+ trees), its
 * WAL and its io_uring, and executes requests that application threads queue to it. */
#ifndef CS_SHARD_H
#define CS_SHARD_H

#include <ck_epoch.h>
#include <ck_stack.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <xxhash.h>

#include "cstore.h"
#include "hist.h"
#include "shards/btree.h"
#include "shards/wal.h"
#include "shards/wal_reader.h" /* part of the interface: the change feed reads logs */
#include "util.h"

enum shard_durability { SHARD_SYNC, SHARD_ASYNC, SHARD_NONE };

enum shard_op {
    SHARD_PUT,          /* coll, key, val, expire_ms (0: none; a put without one clears it) */
    SHARD_GET,          /* coll, key -> out (value copy), out_len */
    SHARD_DEL,          /* coll, key */
    SHARD_BATCH,        /* ops[nops] */
    SHARD_COLL_CREATE,  /* coll; rc CS_EEXIST if it was there (it is created either way) */
    SHARD_COLL_DROP,    /* coll; rc CS_ENOTFOUND if it was not there */
    SHARD_COLL_LIST,    /* -> out: NUL-separated names, out_count names */
    SHARD_VIEW_PIN,     /* coll -> view: a pinned private snapshot (NULL: absent here) */
    SHARD_VIEW_PIN_ALL, /* -> out: private snapshots of every collection, out_count views */
    SHARD_STATS,        /* -> stats */
    SHARD_CHECKPOINT,   /* write a checkpoint; completes once it is published */
    SHARD_CHECK,        /* verify every tree's invariants -> out: first problem (NUL-terminated) */
    SHARD_STOP,         /* finish pending writes and leave the loop */

    /* key: the backup's shard folder (NUL-terminated, exists), klen its length; takes a fresh
     * checkpoint, then -> out: struct shard_backup (see "backup" in shards/shard_ckpt.c) */
    SHARD_BACKUP,

    /* Transactions (shards/txn.c). */
    SHARD_TXN_COMMIT1, /* a transaction on this shard alone: reads[nreads] are validated, then
                          ops[nops] applied as one batch; CS_ECONFLICT when a read changed or a
                          key is locked by a prepared transaction */
    SHARD_TXN_PREPARE, /* txn: validate reads, lock reads and writes, log PREPARE; completes
                          (rc 0: a yes vote) once the record is durable, or with the no vote */
    SHARD_TXN_DECIDE,  /* txn (or txn_id at recovery) and commit: install the writes, or forget
                          them; completes at once, or with txn_sync once the outcome is durable */
    SHARD_TXN_INDOUBT, /* recovery: -> out: transactions prepared here whose outcome the log
                          does not hold, and outcomes it does (see shard_txn_doubt) */
    SHARD_TXN_FORGET,  /* recovery done: drop the outcomes kept for SHARD_TXN_INDOUBT */
    SHARD_COLL_IDS,    /* -> out: each collection as u32 id, u8 name bytes, name; out_count */
    SHARD_GUEST,       /* guest: attach it to the loop (NULL: detach the one attached) */
    SHARD_UPDATE,      /* coll, key, update: a read-modify-write of one key, atomic here */
};

/* Latency histograms a shard keeps (see shard_hist_read). The first four time the requests of
 * the ops of the same value, from shard_submit to their completion (SHARD_TIMED). */
enum shard_hist {
    SHARD_HIST_PUT,         /* SHARD_PUT requests, ns */
    SHARD_HIST_GET,         /* SHARD_GET requests (gets that missed the published view), ns */
    SHARD_HIST_DEL,         /* SHARD_DEL requests, ns */
    SHARD_HIST_BATCH,       /* SHARD_BATCH requests, ns */
    SHARD_HIST_WAL_SYNC,    /* sync: a frame's RWF_DSYNC write; async: a lone fdatasync, ns */
    SHARD_HIST_FRAME_BYTES, /* bytes of each WAL frame written (after compression) */
    SHARD_HIST_CHECKPOINT,  /* checkpoints published: from the snapshot to the publish, ns */
    SHARD_HISTS
};
#define SHARD_TIMED(op) ((op) <= SHARD_BATCH) /* requests whose latency is recorded */
_Static_assert((int)SHARD_HIST_PUT == (int)SHARD_PUT && (int)SHARD_HIST_GET == (int)SHARD_GET &&
                   (int)SHARD_HIST_DEL == (int)SHARD_DEL &&
                   (int)SHARD_HIST_BATCH == (int)SHARD_BATCH,
               "a timed op's histogram has the op's value");

/* What one operation of an atomic batch does. */
enum shard_batch_type { SHARD_BATCH_PUT = 1, SHARD_BATCH_DEL = 2 };

/* One operation of an atomic batch; buffers are borrowed until the request completes. */
struct shard_batch_op {
    uint8_t type;       /* enum shard_batch_type */
    uint8_t coll_len;   /* name length */
    const char *coll;   /* collection name (not NUL-terminated here) */
    const void *key;    /* key bytes */
    uint32_t klen;      /* key length */
    const void *val;    /* value bytes (puts) */
    uint32_t vlen;      /* value length */
    uint64_t expire_ms; /* puts: the record's expiry, Unix ms; 0 = none */
};

/* A transaction that spans shards, shared by its coordinator (engine/txn.c) and the shards that
 * prepared it. state is written by the coordinator alone: PENDING until every participant voted,
 * then COMMITTED or ABORTED (atomic, release; a shard reads it with acquire). */
enum shard_txn_state { SHARD_TXN_PENDING, SHARD_TXN_COMMITTED, SHARD_TXN_ABORTED };
struct shard;
struct shard_txn {
    uint64_t id;         /* unique among the transactions any log may still hold */
    int state;           /* enum shard_txn_state (atomic) */
    uint32_t refs;       /* the coordinator and each shard that holds it (atomic) */
    uint32_t unsettled;  /* participants whose outcome record is not yet durable (atomic) */
    uint16_t nparts;     /* participants */
    bool ordered;        /* an ordered write: its PREPAREs go one at a time and always wait */
    bool ordered_locked; /* ordered: its last PREPARE holds its locks, so it waits no more
                          * (atomic; set by that participant's shard thread) */
    uint16_t parts[WAL_TXN_PARTS_MAX]; /* their shard indexes, increasing */
};
/* Drop one reference (any thread); the last frees it. */
void shard_txn_unref(struct shard_txn *x);

/* A read a transaction made and commit validates: the value it saw (or that it saw none). */
struct shard_txn_read {
    uint8_t coll_len; /* name length */
    bool present;     /* the key held a value */
    const char *coll; /* collection name */
    const void *key;  /* key bytes */
    uint32_t klen;    /* key length */
    uint64_t hash[2]; /* XXH3-128 of the value seen (present only) */
};

/* A range a transaction's cursor read, validated at commit like a read: the records of coll in
 * [lo, hi] (each bound inclusive or not, or unbounded) must still be the ones it saw, by count
 * and by the sum of shard_txn_range_mix over them (order-free: a walk backwards sums the same). */
#define SHARD_RANGE_INCL 1u    /* the bound's key belongs to the range */
#define SHARD_RANGE_UNBOUND 2u /* no bound on this side */
struct shard_txn_range {
    uint8_t coll_len;
    uint8_t lo_flags, hi_flags; /* SHARD_RANGE_* */
    uint16_t lo_len, hi_len;
    const char *coll;
    const void *lo, *hi;
    uint64_t count;
    uint64_t sum[2];
};

static inline void shard_txn_range_mix(const void *key, size_t klen, const void *val, size_t vlen,
                                       uint64_t sum[2])
{
    XXH128_hash_t k = XXH3_128bits(key, klen);
    XXH128_hash_t v = XXH3_128bits_withSeed(val, vlen, k.low64);
    sum[0] += v.low64 ^ k.high64;
    sum[1] += v.high64;
}

/* Whether key lies in r's bounds (memcmp order, shorter first on a tie). */
static inline int shard_key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}
static inline bool shard_txn_range_has(const struct shard_txn_range *r, const void *key,
                                       size_t klen)
{
    if (!(r->lo_flags & SHARD_RANGE_UNBOUND)) {
        int c = shard_key_cmp(key, klen, r->lo, r->lo_len);
        if (c < 0 || (c == 0 && !(r->lo_flags & SHARD_RANGE_INCL)))
            return false;
    }
    if (!(r->hi_flags & SHARD_RANGE_UNBOUND)) {
        int c = shard_key_cmp(key, klen, r->hi, r->hi_len);
        if (c > 0 || (c == 0 && !(r->hi_flags & SHARD_RANGE_INCL)))
            return false;
    }
    return true;
}

/* SHARD_TXN_INDOUBT's answer: out_count entries, back to back, each
 *   u64 id, u8 state (0 prepared here with no outcome, 1 committed, 2 aborted), u16 n,
 *   u16 participants[n] (n = 0 for outcomes). */
#define SHARD_TXN_DOUBT_PREPARED 0u
#define SHARD_TXN_DOUBT_COMMITTED 1u
#define SHARD_TXN_DOUBT_ABORTED 2u

/* SHARD_BACKUP's answer: what the shard hard-linked into the backup's shard folder, and what the
 * caller still has to copy there (see "backup" in shards/shard_ckpt.c). The caller closes every
 * fd >= 0 and frees the whole with cs_mem_free. */
struct shard_backup_file {
    char name[32];       /* file name, the same in the source and the backup folder */
    int fd;              /* read-only descriptor of the source to copy; -1: linked already */
    uint64_t copy_bytes; /* bytes to copy from offset 0 */
    uint64_t file_bytes; /* size of the copy: bytes after copy_bytes read as zeros */
};
struct shard_backup {
    uint64_t ckpt_lsn;                /* LSN of the checkpoint the backup holds */
    uint64_t wal_lsn;                 /* last LSN the backup holds (checkpoint, then WAL frames) */
    uint32_t nfiles;                  /* entries in files */
    uint32_t linked;                  /* how many of them are hard links */
    struct shard_backup_file files[]; /* the checkpoint, then WAL segments in LSN order */
};

/* A read-only snapshot of one collection on one shard that application threads read without
 * the shard (see "VIEWS" in shards/views.c). */
struct shard_view;

/* A request. The submitter owns the memory and every buffer it points to until done() has been
 * called; done() runs on the shard thread and must only signal. */
struct shard_req {
    uint8_t op;                           /* enum shard_op */
    uint16_t coll_len;                    /* bytes of coll */
    const char *coll;                     /* collection name */
    const void *key;                      /* key (or scan start key) */
    size_t klen;                          /* key length */
    const void *val;                      /* value */
    size_t vlen;                          /* value length */
    uint64_t expire_ms;                   /* SHARD_PUT: the record's expiry (Unix ms), 0: none */
    const struct shard_batch_op *ops;     /* batch operations */
    size_t nops;                          /* count of ops */
    struct shard_view *view;              /* SHARD_VIEW_PIN: the pinned view */
    struct cs_shard_stats *stats;         /* stats destination */
    struct shard_txn *txn;                /* SHARD_TXN_PREPARE, SHARD_TXN_DECIDE */
    const struct shard_guest *guest;      /* SHARD_GUEST */
    const struct shard_update *update;    /* SHARD_UPDATE */
    const struct shard_txn_read *reads;   /* SHARD_TXN_COMMIT1, SHARD_TXN_PREPARE */
    size_t nreads;                        /* count of reads */
    const struct shard_txn_range *ranges; /* the same: ranges read by cursors */
    size_t nranges;                       /* count of ranges */
    uint64_t txn_id;                      /* SHARD_TXN_DECIDE without txn (recovery) */
    bool commit;                          /* SHARD_TXN_DECIDE: commit (else abort) */
    bool txn_sync;              /* SHARD_TXN_DECIDE: complete once the outcome is durable */
    bool read_now;              /* SHARD_GET: answer without waiting for durability (a read-write
                                 * transaction's read: its commit waits for what it read, engine/txn.c) */
    uint8_t parks;              /* COMMIT1, PREPARE: times parked on a lock (internal) */
    void *owner;                /* the submitter's, for done() (the shard ignores it) */
    int rc;                     /* result */
    void *out;                  /* result buffer (cs_mem, the receiver frees it) */
    size_t out_len;             /* its length */
    uint32_t out_count;         /* names in out */
    uint64_t wait_lsn;          /* completes once this LSN is durable (internal) */
    uint64_t submit_ns;         /* timed ops (SHARD_TIMED): when shard_submit queued it */
    struct shard_req *next;     /* local queue / pending list link (internal) */
    struct ck_stack_entry link; /* inbox link (internal) */
    void (*done)(struct shard_req *r); /* completion signal */
};

struct shard_config {
    const char *dir; /* the shard's folder (exists) */
    unsigned index;  /* shard index */
    int cpu;         /* CPU to pin to, or -1 */
    enum shard_durability durability;
    uint32_t sync_interval_ms;      /* async: fdatasync period */
    uint32_t group_commit_delay_us; /* wait this long for more writes before sealing a frame */
    uint32_t yield_us;              /* sync: sched_yield this long after a write, then sleep */
    uint64_t wal_segment_bytes;     /* WAL segment size */
    uint32_t wal_compress_bytes;    /* compression threshold */
    uint32_t batch_max;             /* requests taken per loop iteration */
    uint64_t memory_bytes_max;      /* tree bytes this shard may hold; 0 = no limit */
    uint64_t checkpoint_wal_bytes;  /* checkpoint once this much WAL was written; 0 = never */
    enum wal_open_mode open_mode;   /* recovery: normal, verify (change nothing) or salvage */
    bool fresh_segment;             /* the last writer did not close cleanly: new WAL segment */
    struct io_fault *fault;         /* fault plan for its I/O, or NULL (borrowed) */
};

/* A shard: opaque to the engine (its rooms share shards/shard_int.h). */
struct shard;
struct io_ring;

/* SHARD_UPDATE: what to write after reading a key, decided on the shard thread. */
enum shard_update_write {
    SHARD_UPDATE_NONE,  /* write nothing */
    SHARD_UPDATE_PUT,   /* put val with expiry expire_ms */
    SHARD_UPDATE_DEL,   /* delete the key */
    SHARD_UPDATE_EXPIRE /* keep the value, set the expiry to expire_ms (0: none); a put of the
                           same value as far as the WAL, views and transactions are concerned */
};
struct shard_update_out {
    int write;          /* enum shard_update_write */
    const void *val;    /* PUT: the new value (the caller's memory, valid until completion) */
    size_t vlen;        /* its length (at most CS_VALUE_MAX, else the request fails CS_EVALSIZE) */
    uint64_t expire_ms; /* PUT, EXPIRE: the record's expiry afterwards (Unix ms; 0: none). Holds
                           the current record's expiry when fn is called (0 when !found), so a
                           PUT keeps the expiry unless fn changes it (INCR, APPEND) */
};
/* fn runs on the key's shard thread with the key's current value (old is a view of the tree,
 * valid during the call only; found false: no record, or an expired one), atomically with respect
 * to every other request of that shard, after any transaction holding the key has been resolved
 * (the request parks like a put). It fills *out and returns 0, or returns an error: nothing is
 * written and the request completes with it. It must not block. The write then goes through the
 * ordinary put or delete path (WAL record, durability rules of a put). */
struct shard_update {
    int (*fn)(void *arg, const void *old, size_t oldlen, bool found, struct shard_update_out *out);
    void *arg; /* handed to fn */
};

/* A guest: code that runs inside a shard's loop, on its thread, and does its I/O through the
 * shard's io_uring (the network server: each shard serves the connections it accepts, as
 * DESIGN.md section 6 has it). Attached and detached by a SHARD_GUEST request, so the loop alone
 * ever touches the pointer. Its operations carry tags with SHARD_GUEST_TAG set; their completions
 * go to event(). Once per loop iteration, after the completions, poll() runs: it does the guest's
 * work and returns true when more is ready at once (then the loop does not sleep). Before the loop
 * sleeps, after it published that it is about to (see shard_wake), pending() says whether work
 * arrived meanwhile; another thread that hands the guest work calls shard_wake afterwards. The
 * callbacks must not block: a blocking engine call from the shard thread waits for itself. Only
 * the shard's io_uring (ring, borrowed for the call) is theirs to use; the shard's own tags stay
 * below SHARD_GUEST_TAG. Detach only once no guest operation is in flight. */
#define SHARD_GUEST_TAG (1ull << 63)
struct shard_guest {
    void *arg; /* handed to each callback */
    void (*event)(void *arg, struct io_ring *ring, uint64_t tag, int res, uint32_t flags);
    bool (*poll)(void *arg, struct io_ring *ring);
    bool (*pending)(void *arg);
};
/* Wake the shard's loop if it sleeps (any thread; cheap when it does not). */
void shard_wake(struct shard *sh);

/* Allocate a shard and start its thread, which then recovers the shard's WAL (shards recover in
 * parallel); *out receives it. Then shard_await, and in the end shard_free. */
CS_MUST_CHECK int shard_launch(const struct shard_config *cfg, struct shard **out);
/* Wait for a launched shard's recovery. Returns its result; on failure the thread has ended and
 * the shard holds nothing that needs stopping (shard_start_message says why): shard_free it. */
CS_MUST_CHECK int shard_await(struct shard *sh);
/* What recovery reported: the damaged file and offset, a torn tail cut, a fallback checkpoint
 * ("" when nothing). Valid until shard_free. */
const char *shard_start_message(const struct shard *sh);
/* Release a shard that was stopped, or whose shard_await failed. NULL is fine. */
void shard_free(struct shard *sh);
/* Add the shard's histogram `which` to dst (any thread, any time: relaxed reads, so a snapshot
 * taken while the shard records may be torn across buckets; see common/hist.h). */
void shard_hist_read(const struct shard *sh, enum shard_hist which, struct hist *dst);
/* Queue r to the shard (lock-free, never waits) and wake it if it sleeps. For the timed ops
 * (SHARD_TIMED) it first reads the clock into r->submit_ns. */
void shard_submit(struct shard *sh, struct shard_req *r);
/* Stop the thread after it finished everything queued; returns the shard's I/O error if any. */
int shard_stop(struct shard *sh);

/* Lock-free reads, from any thread, of the shard's published views. They answer only when the
 * views hold every write acknowledged so far (and, in sync mode, nothing that is not durable);
 * otherwise they return SHARD_VIEW_MISS and the caller goes through the queue (which also asks
 * the shard to publish). */
#define SHARD_VIEW_MISS 1
/* 0 with a copy of the value (*val from cs_mem_alloc, NULL when empty), CS_ENOTFOUND, -ENOMEM,
 * or SHARD_VIEW_MISS. */
int shard_view_get(struct shard *sh, const char *coll, size_t coll_len, const void *key,
                   size_t klen, void **val, size_t *vlen);
/* 0 with *view pinned (it stays readable until unpinned), or SHARD_VIEW_MISS. */
int shard_view_pin(struct shard *sh, const char *coll, size_t coll_len, struct shard_view **view);
/* One more pin on a view the caller has pinned (any thread); drop it with shard_view_unpin. */
void shard_view_ref(struct shard_view *v);
/* The snapshot a pinned view holds. */
const struct btree_snap *shard_view_snap(const struct shard_view *v);
/* Pin the published views of every collection of the shard, taken at one moment: no write was
 * acknowledged between them (any thread). 0 with *views (*count pinned views in an array from
 * malloc; unpin each, then free it), SHARD_VIEW_MISS when they are not fresh or were republished
 * meanwhile (nothing is pinned: ask with SHARD_VIEW_PIN_ALL), or -ENOMEM. Costs O(collections
 * of the shard). */
int shard_view_pin_all(struct shard *sh, struct shard_view ***views, uint32_t *count);
/* The name of v's collection (not NUL-terminated: *len bytes), valid while v is pinned. */
const char *shard_view_name(const struct shard_view *v, size_t *len);
/* Drop a pin taken by shard_view_pin() or SHARD_VIEW_PIN (any thread). */
void shard_view_unpin(struct shard *sh, struct shard_view *v);

#endif
