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

#include "cstore.h"
#include "io/ring.h"
#include "shards/btree.h"
#include "shards/checkpoint.h"
#include "shards/wal.h"
#include "util.h"

enum shard_durability { SHARD_SYNC, SHARD_ASYNC, SHARD_NONE };

enum shard_op {
    SHARD_PUT,         /* coll, key, val */
    SHARD_GET,         /* coll, key -> out (value copy), out_len */
    SHARD_DEL,         /* coll, key */
    SHARD_BATCH,       /* ops[nops] */
    SHARD_COLL_CREATE, /* coll; rc CS_EEXIST if it was there (it is created either way) */
    SHARD_COLL_DROP,   /* coll; rc CS_ENOTFOUND if it was not there */
    SHARD_COLL_LIST,   /* -> out: NUL-separated names, out_count names */
    SHARD_VIEW_PIN,    /* coll -> view: a pinned private snapshot (NULL: absent here) */
    SHARD_STATS,
    /* -> stats */ SHARD_CHECKPOINT, /* write a checkpoint; completes once it is published */
    SHARD_CHECK, /* verify every tree's invariants -> out: first problem (NUL-terminated) */
    SHARD_STOP,  /* finish pending writes and leave the loop */

    /* key: the backup's shard folder (NUL-terminated, exists), klen its length; takes a fresh
     * checkpoint, then -> out: struct shard_backup (see "backup" in shard.c) */
    SHARD_BACKUP,
};

/* One operation of an atomic batch; buffers are borrowed until the request completes. */
struct shard_batch_op {
    uint8_t type;     /* WAL_PUT or WAL_DEL */
    uint8_t coll_len; /* name length */
    const char *coll; /* collection name (not NUL-terminated here) */
    const void *key;  /* key bytes */
    uint32_t klen;    /* key length */
    const void *val;  /* value bytes (puts) */
    uint32_t vlen;    /* value length */
};

/* SHARD_BACKUP's answer: what the shard hard-linked into the backup's shard folder, and what the
 * caller still has to copy there (see "backup" in shard.c). The caller closes every fd >= 0 and
 * frees the whole with cs_mem_free. */
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
 * the shard (see "VIEWS" in shard.c). */
struct shard_view;

/* A request. The submitter owns the memory and every buffer it points to until done() has been
 * called; done() runs on the shard thread and must only signal. */
struct shard_req {
    uint8_t op;                        /* enum shard_op */
    uint16_t coll_len;                 /* bytes of coll */
    const char *coll;                  /* collection name */
    const void *key;                   /* key (or scan start key) */
    size_t klen;                       /* key length */
    const void *val;                   /* value */
    size_t vlen;                       /* value length */
    const struct shard_batch_op *ops;  /* batch operations */
    size_t nops;                       /* count of ops */
    struct shard_view *view;           /* SHARD_VIEW_PIN: the pinned view */
    struct cs_shard_stats *stats;      /* stats destination */
    int rc;                            /* result */
    void *out;                         /* result buffer (cs_mem, the receiver frees it) */
    size_t out_len;                    /* its length */
    uint32_t out_count;                /* names in out */
    uint64_t wait_lsn;                 /* completes once this LSN is durable (internal) */
    struct shard_req *next;            /* local queue / pending list link (internal) */
    struct ck_stack_entry link;        /* inbox link (internal) */
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
    struct io_fault *fault;         /* fault plan for its I/O, or NULL (borrowed) */
};

struct shard_coll;

/* Views captured when a WAL frame was sealed, published when it is durable (sync mode). */
struct view_cap_entry {
    struct shard_coll *coll; /* referenced */
    struct shard_view *view; /* its new view (NULL: dropped, or out of memory) */
};
struct view_cap {
    struct view_cap_entry *e; /* the captured collections */
    uint32_t n;               /* entries used */
    uint32_t cap;             /* entries allocated */
    uint64_t seq;             /* write sequence at the seal */
    bool complete;            /* every changed collection was captured */
};

/* Undo of one WAL frame (see shard.c). */
enum { UNDO_CREATE, UNDO_DROP };
struct undo_tree {
    struct shard_coll *coll; /* referenced */
    bool snapped;            /* snap holds the tree from a point of the frame on */
    struct btree_snap snap;  /* the tree at that point (see "frame undo" in shard.c) */
};
struct undo_rec {
    struct shard_coll *coll; /* referenced through the frame's trees[] */
    uint32_t off;            /* key, then the old value, at bytes[off] */
    uint32_t klen;           /* key bytes */
    uint32_t vlen;           /* old value bytes */
    bool had;                /* the key held a value before the write */
};
struct undo_cat {
    uint8_t op;              /* UNDO_CREATE or UNDO_DROP */
    struct shard_coll *coll; /* referenced */
};
struct frame_undo {
    struct undo_tree *trees; /* trees the frame changed */
    uint32_t ntrees;         /* entries used */
    uint32_t cap_trees;      /* entries allocated */
    struct undo_rec *recs;   /* the frame's writes, in order, as they can be taken back */
    uint32_t nrecs;          /* entries used */
    uint32_t cap_recs;       /* entries allocated */
    uint8_t *bytes;          /* their keys and old values */
    uint32_t nbytes;         /* bytes used (at most UNDO_LOG_BYTES_MAX) */
    uint32_t cap_bytes;      /* bytes allocated */
    struct undo_cat *cats;   /* catalog changes, in order */
    uint32_t ncats;          /* entries used */
    uint32_t cap_cats;       /* entries allocated */
};

struct shard {
    /* Shared with application threads. */
    struct ck_stack inbox;          /* requests pushed by submitters (newest first) */
    _Atomic int sleeping;           /* the loop is (about to be) blocked: wake via efd */
    _Atomic int closed;             /* the loop is gone: requests complete with CS_ECLOSED */
    int efd;                        /* eventfd that wakes the loop */
    pthread_t thread;               /* the shard thread */
    bool launched;                  /* thread created, recovery not yet awaited */
    bool started;                   /* recovered and serving */
    struct shard_config cfg;        /* copy of the configuration */
    char dir[PATH_MAX];             /* shard folder */
    int start_rc;                   /* recovery result, set before the thread signals */
    char start_msg[PATH_MAX + 128]; /* recovery message (corruption place, torn tail) */
    sem_t start_sem;                /* posted once recovery finished */

    /* Read by lock-free readers (their own cache line: written once per publish or write). */
    _Alignas(64) uint64_t ack_seq; /* writes that may have been acknowledged (atomic) */
    uint64_t view_seq;             /* writes the published views hold (atomic) */
    int view_wanted;               /* a reader missed: publish at the next chance (atomic) */
    uint64_t view_hold_ns;         /* sync: frames publish views until this time */
    struct ck_stack view_free;     /* retired views whose last pin was just dropped */

    /* Owned by the shard thread. */
    _Alignas(64) unsigned arena;       /* jemalloc arena */
    struct io_ring ring;               /* its io_uring */
    struct wal wal;                    /* its log (durability != none) */
    bool wal_on;                       /* wal is open */
    struct wal_io io;                  /* the frame being written */
    unsigned io_wait;                  /* completions still expected for io */
    int io_res;                        /* first error among them */
    uint64_t io_submit_ns;             /* when the frame in flight was submitted */
    bool io_yield;                     /* yield rather than sleep while it is in flight */
    bool fsync_in_flight;              /* async mode: a lone fdatasync is running */
    uint64_t written_lsn;              /* last LSN written to the file */
    uint64_t durable_lsn;              /* last LSN known durable */
    uint64_t applied_lsn;              /* last LSN applied to the trees */
    uint64_t efd_buf;                  /* eventfd read target */
    struct __kernel_timespec delay_ts; /* group-commit delay timer */
    struct __kernel_timespec sync_ts;  /* async sync timer */
    bool delay_armed;                  /* delay timer is pending */
    bool delay_done;                   /* delay elapsed: seal now */
    bool sync_armed;                   /* sync timer is pending */
    bool sync_due;                     /* sync timer fired: fdatasync when possible */
    uint64_t fsync_lsn;                /* async: LSN the running fdatasync makes durable */
    bool stopping;                     /* SHARD_STOP received */
    struct shard_req *stop_req;        /* to complete when the loop ends */
    int io_error;                      /* non-zero: read-only after this error */
    bool ckpt_doomed;                  /* the running checkpoint holds rolled-back writes */
    bool ckpt_salvaged;                /* the checkpoint was salvaged: write a new one */
    bool undo_on;                      /* sync mode: frames can be taken back */
    bool fenced;                       /* a failed frame could not be taken back: no reads */
    uint64_t frame_seq;                /* sequence number of the open frame (from 1) */
    struct frame_undo undo[2];         /* per WAL slot: what its frame changed */
    struct ckpt_job *ckpt;             /* checkpoint being written, or NULL */
    pthread_t ckpt_thread;             /* its writer */
    _Atomic int ckpt_written;          /* the writer finished (it then wakes the loop) */
    struct shard_req *ckpt_waiters;    /* checkpoint requests the running one answers */
    struct shard_req *ckpt_next;       /* checkpoint requests that need a newer one */
    uint64_t ckpt_lsn;                 /* LSN of the newest published checkpoint */
    uint64_t wal_bytes_since_ckpt;     /* WAL bytes written since the last checkpoint began */
    struct shard_coll *load_coll;      /* recovery: collection the checkpoint is loading */
    struct shard_req *queue;           /* taken from the inbox, not yet executed (FIFO) */
    struct shard_req *pending_head;    /* requests waiting for durability, in LSN order */
    struct shard_req *pending_tail;    /* last of them */
    struct shard_coll **by_name;       /* hash of collections by name */
    struct shard_coll **by_id;         /* hash of collections by id */
    uint32_t next_coll_id;             /* id the next collection gets */
    uint64_t tree_bytes;               /* bytes held by all trees */
    uint64_t tree_bytes_peak;          /* their high-water mark since the last trim */
    uint64_t wseq;                     /* changes made to trees and catalog so far */
    ck_epoch_record_t *erec;           /* defers frees until no reader can hold them */
    uint32_t retired;                  /* deferrals not yet run */
    bool epoch_armed;                  /* a timer will poll the epoch again */
    struct __kernel_timespec epoch_ts; /* its period */
    struct shard_coll *dirty;          /* collections changed since their views were taken */
    struct view_cap cap[2];            /* per WAL slot: views its frame publishes when durable */
    struct cs_shard_stats stats;       /* counters */
};

/* Start the shard thread, which then recovers the shard's WAL (shards recover in parallel). */
CS_MUST_CHECK int shard_launch(struct shard *sh, const struct shard_config *cfg);
/* Wait for a launched shard's recovery. Returns its result; on failure the thread has ended and
 * *sh holds nothing that needs stopping (start_msg says why). */
CS_MUST_CHECK int shard_await(struct shard *sh);
/* Queue r to the shard (lock-free, never waits) and wake it if it sleeps. */
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
/* The snapshot a pinned view holds. */
const struct btree_snap *shard_view_snap(const struct shard_view *v);
/* Drop a pin taken by shard_view_pin() or SHARD_VIEW_PIN (any thread). */
void shard_view_unpin(struct shard *sh, struct shard_view *v);

#endif
