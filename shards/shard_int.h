/* Private interface of the shard runtime (like SQLite's btreeInt.h): struct shard and the types
 * its rooms share, and the functions they call across files. Only the files of shards/ include it;
 * the engine sees shards/shard.h alone. Every function here runs on the shard's own thread unless
 * its comment says otherwise (SHARD_OWNED asserts it in debug builds).
 *
 * The rooms:
 *   shard.c       the loop, WAL I/O, thread start and stop, submission
 *   exec.c        executing requests (puts, gets, deletes, batches, collections), WAL replay
 *   completion.c  finishing requests, the durability-pending list
 *   catalog.c     the collection catalog (by name, by id), references, the dirty list, tree
 *                 byte accounting
 *   undo.c        the frame undo log: what each WAL frame changed, taken back when it fails
 *   views.c       views (published snapshots) and the lock-free readers of application threads
 *   shard_ckpt.c  checkpoints and online backups of a running shard; loading a checkpoint at
 *                 recovery
 *   txn.c         transactions: validation, the lock table, prepare, install, in-doubt
 *                 transactions at recovery
 *   expire.c      the background reclaim of expired records
 */
#ifndef CS_SHARD_INT_H
#define CS_SHARD_INT_H

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <xxhash.h>
#include <inttypes.h>

#include "io/ring.h"
#include "shards/checkpoint.h"
#include "shards/shard.h"
#include "epoch.h"
#include "io/fault.h"
#include "io/file.h"

#define COLL_BUCKETS 1024u     /* hash buckets of the per-shard catalog (power of two) */
#define TXN_INTENT_SLOTS 4096u /* slots of the per-key intent counts (power of two) */
#define EVENTS_MAX 32u         /* completions reaped per io_ring_run */

enum shard_tag {
    TAG_WAKE = 1,   /* eventfd read */
    TAG_WRITE = 2,  /* frame write (in sync mode with RWF_DSYNC) */
    TAG_DELAY = 4,  /* group-commit delay timer */
    TAG_SYNC = 5,   /* async-mode sync timer */
    TAG_FSYNC = 6,  /* async-mode lone fdatasync */
    TAG_EPOCH = 7,  /* poll the epoch again: retired views wait for readers */
    TAG_HOLD = 8,   /* a frame of outcome records only has waited OUTCOME_HOLD_NS */
    TAG_EXPIRE = 9, /* the expiry reclaim's period (EXPIRE_PERIOD_MS) */
};

#define TRIM_BYTES (4u << 20)   /* see mem_trim */
#define YIELD_RECORDS_MAX 4u    /* a frame of at most this many records: yield while in flight */
#define VIEW_HOLD_NS 100000000u /* see views_needed */
#define UNDO_VALUE_MAX 256u     /* larger old values: the frame snapshots the tree instead */
#define UNDO_LOG_BYTES_MAX (4u << 20) /* a frame's undo log; past it, snapshots */
#define EPOCH_POLL_NS 1000000         /* period of TAG_EPOCH while deferrals are pending */
#define OUTCOME_HOLD_NS 2000000       /* see frame_held (shard.c) */
#define VIEW_RETIRED 0x80000000u      /* shard_view.pins: unpublished; the last unpin releases it */

struct shard_coll {
    struct shard_coll *next_name;  /* by_name chain */
    struct shard_coll *next_all;   /* shard.colls list (atomic: read by readers) */
    struct shard_coll *next_id;    /* by_id chain */
    uint32_t id;                   /* shard-local id, never reused */
    uint32_t refs;                 /* 1 while in the catalog + 1 per open snapshot */
    bool dropped;                  /* removed from the catalog */
    uint64_t undo_seq;             /* frame whose undo lists this collection (0: none) */
    uint32_t undo_idx;             /* its index in that frame's trees[] */
    uint8_t name_len;              /* bytes of name */
    bool dirty;                    /* on the shard's dirty list (which holds a reference) */
    struct shard_coll *next_dirty; /* dirty list link */
    struct shard_view *view;       /* published view or NULL (atomic: read by readers) */
    struct shard *sh;              /* owner (for deferred frees) */
    uint32_t intents;              /* writes of prepared transactions (atomic: views miss) */
    ck_epoch_entry_t epoch_entry;  /* deferred free */
    char name[CS_NAME_MAX + 1];    /* NUL-terminated */
    struct btree tree;             /* the records */
};

struct shard_view {
    struct btree_snap snap;          /* holds the root */
    struct shard_coll *coll;         /* holds a reference */
    struct shard *sh;                /* owner */
    uint32_t pins;                   /* cursors holding it, | VIEW_RETIRED (atomic) */
    ck_epoch_entry_t epoch_entry;    /* deferred retirement */
    struct ck_stack_entry free_link; /* view_free link */
};

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

/* Transactions (txn.c). A lock names a key of a collection (by name: a transaction may read a
 * key of a collection the shard does not have). */
struct txn_part;
struct txn_lock {
    struct txn_lock *next;     /* hash chain */
    uint64_t hash;             /* of name and key */
    uint32_t readers;          /* read marks of prepared transactions */
    uint64_t reader_id_max;    /* the largest id that took a read mark (while readers > 0) */
    struct txn_part *writer;   /* the prepared transaction that writes the key, or NULL */
    uint32_t wi;               /* index of that write in writer->w */
    struct shard_req *waiters; /* requests parked until the lock goes (FIFO) */
    struct shard_req *waiters_tail;
    uint32_t txn_waiters; /* of them, transaction requests (TXN_WAIT_QUEUE_MAX) */
    bool reserved;        /* the shard's waiting ordered write (ordered_head) writes the key */
    uint8_t name_len;     /* collection name bytes */
    uint16_t klen;        /* key bytes */
    uint8_t bytes[];      /* name, then key */
};
struct txn_write {
    struct txn_lock *lock;   /* its write lock (NULL when recovered from the log) */
    struct shard_coll *coll; /* its collection (referenced) */
    uint8_t type;            /* SHARD_BATCH_PUT or SHARD_BATCH_DEL */
    uint32_t klen;           /* key bytes */
    uint32_t vlen;           /* value bytes */
    uint64_t expire_ms;      /* puts: the record's expiry (Unix ms), 0: none */
    uint8_t *bytes;          /* key, then value (one allocation) */
};
enum { TXN_PREPARED, TXN_SETTLING };
struct txn_part {
    struct txn_part *next; /* the shard's list */
    uint64_t id;           /* transaction id */
    struct shard_txn *x;   /* shared state (referenced), NULL when recovered from the log */
    uint8_t phase;         /* TXN_PREPARED or TXN_SETTLING (outcome logged) */
    bool committed;        /* the outcome, once SETTLING */
    bool counted;          /* its durable outcome was counted off x->unsettled */
    uint16_t nparts;       /* participants */
    uint16_t *parts;       /* their shard indexes */
    uint64_t outcome_lsn;  /* LSN of the outcome record (0: not logged) */
    uint64_t decide_seq;   /* order of the outcomes on this shard */
    struct txn_write *w;   /* writes */
    uint32_t nw;
    struct txn_lock **rd; /* read marks held */
    uint32_t nr;
    struct shard_txn_range *rg; /* range marks held (copies; bounds in rg_bytes) */
    uint32_t nrg;
    uint8_t *rg_bytes;
};
struct txn_known {
    struct txn_known *next;
    uint64_t id;
    bool committed;
};

/* Undo of one WAL frame (see shards/undo.c). */
enum { UNDO_CREATE, UNDO_DROP };
struct undo_tree {
    struct shard_coll *coll; /* referenced */
    bool snapped;            /* snap holds the tree from a point of the frame on */
    struct btree_snap snap;  /* the tree at that point (see shards/undo.c) */
};
struct undo_rec {
    struct shard_coll *coll; /* referenced through the frame's trees[] */
    uint32_t off;            /* key, then the old value, at bytes[off] */
    uint32_t klen;           /* key bytes */
    uint32_t vlen;           /* old value bytes */
    bool had;                /* the key held a value before the write */
    uint64_t expire_ms;      /* the old record's expiry (0: none) */
};
/* One write of the open frame, as undo_log_old logs it (the arg of btree_put_old/_del_old). */
struct undo_write {
    struct shard *sh;        /* the shard */
    struct shard_coll *coll; /* the collection written */
    const void *key;         /* the key written (borrowed for the call) */
    size_t klen;             /* its bytes */
    uint64_t old_expire_ms;  /* out: the expiry of what the key held (deletes; 0: none) */
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
    pthread_t owner;                /* the same, as the thread itself sees it (SHARD_OWNED) */
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
    /* Per slot (intent_slot() of collection and key): writes of prepared transactions to keys
     * of that slot (atomic). A get whose key's slot is not 0 does not read views (txn.c). */
    _Alignas(64) uint32_t intent_keys[TXN_INTENT_SLOTS];
    struct shard_coll *colls; /* every collection in the catalog (atomic, release on link) */
    uint64_t pub_gen;         /* odd while views are being published (atomic): see views.c */

    /* Owned by the shard thread. */
    _Alignas(64) unsigned arena;       /* jemalloc arena */
    struct io_ring ring;               /* its io_uring */
    const struct shard_guest *guest;   /* attached by SHARD_GUEST, or NULL */
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
    uint64_t data_lsn;                 /* last LSN whose record changed what reads see (not a
                                          PREPARE or an outcome: see req_finish_read) */
    uint64_t efd_buf;                  /* eventfd read target */
    struct __kernel_timespec delay_ts; /* group-commit delay timer */
    struct __kernel_timespec sync_ts;  /* async sync timer */
    bool delay_armed;                  /* delay timer is pending */
    bool delay_done;                   /* delay elapsed: seal now */
    bool sync_armed;                   /* sync timer is pending */
    bool sync_due;                     /* sync timer fired: fdatasync when possible */
    size_t outcome_bytes;              /* the open frame's bytes while it holds outcome records
                                          only (else less than wal_open_bytes) */
    struct __kernel_timespec hold_ts;  /* its hold timer */
    bool hold_armed;                   /* the hold timer is pending */
    uint64_t hold_frame;               /* frame_seq of the frame it was armed for */
    bool hold_done;                    /* it fired for the open frame: seal now */
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
    uint32_t pending_count;            /* requests on the pending list */
    uint64_t fsync_submit_ns;          /* async: when the running lone fdatasync was submitted */
    uint64_t ckpt_start_ns;            /* when the running checkpoint took its snapshots */
    struct hist hists[SHARD_HISTS];    /* latencies and sizes: written by the shard thread
                                        * alone (hist_record_sw), read by any thread */

    /* Transactions (txn.c). */
    struct txn_lock **locks;         /* lock table (TXN_LOCK_BUCKETS), NULL until first used */
    uint32_t nlocks;                 /* locks in it */
    struct txn_part *txn_parts;      /* prepared transactions */
    struct txn_part *txn_settling;   /* settling ones (outcome decided: txn_poll walks them) */
    uint64_t txn_poll_lsn;           /* durable_lsn at txn_poll's last walk */
    uint32_t txn_poll_skips;         /* calls since then that did not walk */
    struct txn_known *txn_known;     /* recovery: outcomes the log held */
    uint64_t txn_decide_seq;         /* outcomes decided so far */
    uint32_t txn_range_marks;        /* prepared transactions here that hold range marks */
    struct shard_req *range_waiters; /* writes parked on a range mark (FIFO) */
    struct shard_req *range_waiters_tail;
    uint32_t range_txn_waiters;      /* of them, transaction requests (TXN_WAIT_QUEUE_MAX) */
    struct shard_req *ordered_head;  /* the ordered write's PREPARE that waits here, or NULL */
    struct shard_req *ordered_queue; /* ordered PREPAREs queued behind it (FIFO) */
    struct shard_req *ordered_queue_tail;
    uint32_t txn_load_left; /* recovery: writes still due of the checkpoint's last
                               transaction entry */

    /* Expiry (exec.c, expire.c). */
    uint64_t last_old_expire_ms; /* the expiry of what the last exec_tree_write replaced */
    bool expire_hint;            /* a record with an expiry may exist: the reclaim runs */
    bool expire_armed;           /* its timer (TAG_EXPIRE) is pending */
    bool expire_due;             /* run a reclaim pass at the next loop iteration */
    bool expire_seen;            /* the sweep under way met a record with an expiry */
    uint32_t expire_coll;        /* id + 1 of the collection the sweep is in (0: start over) */
    uint16_t expire_klen;        /* where in it: the first key not yet looked at (0: its start) */
    struct __kernel_timespec expire_ts; /* the timer's period */
    uint8_t *expire_keys;           /* a pass's expired keys (EXPIRE_DEL_MAX * CS_KEY_MAX bytes) */
    uint8_t expire_key[CS_KEY_MAX]; /* the sweep's position (expire_klen bytes) */
};

/* Debug builds: assert that a shard-only function runs on the shard's thread (the owner is set
 * when the thread starts; recovery runs on it too). */
#ifdef CS_DEBUG
#define SHARD_OWNED(sh) cs_assert(pthread_equal(pthread_self(), (sh)->owner))
#else
#define SHARD_OWNED(sh) ((void)(sh))
#endif

static inline void link_store(struct shard_coll **p, struct shard_coll *c)
{
    __atomic_store_n(p, c, __ATOMIC_RELEASE);
}

static inline uint32_t name_bucket(const char *name, size_t len)
{
    return (uint32_t)XXH3_64bits(name, len) & (COLL_BUCKETS - 1);
}

/* Record in the shard's histogram `which` the time since start_ns (one clock read). */
static inline void shard_hist_since(struct shard *sh, enum shard_hist which, uint64_t start_ns)
{
    uint64_t now_ns = cs_now_ns();
    hist_record_sw(&sh->hists[which], now_ns > start_ns ? now_ns - start_ns : 0);
}

/* The hash of a key of a collection: the lock table's, and (masked) its intent slot. */
static inline uint64_t txn_key_hash(const char *name, size_t nlen, const void *key, size_t klen)
{
    return XXH3_64bits_withSeed(key, klen, XXH3_64bits(name, nlen));
}

static inline uint32_t intent_slot(uint64_t key_hash)
{
    return (uint32_t)key_hash & (TXN_INTENT_SLOTS - 1);
}

/* ---- catalog.c ---- */
struct shard_coll *coll_find(struct shard *sh, const char *name, size_t len);
struct shard_coll *coll_find_id(struct shard *sh, uint32_t id);
void coll_unref(struct shard *sh, struct shard_coll *c);
void coll_dirty(struct shard *sh, struct shard_coll *c);
struct shard_coll *coll_add(struct shard *sh, uint32_t id, const char *name, size_t len);
void coll_remove(struct shard *sh, struct shard_coll *c);
uint64_t tree_bytes_before(const struct shard_coll *c);
void tree_bytes_after(struct shard *sh, const struct shard_coll *c, uint64_t before,
                      uint64_t count_before);

/* ---- undo.c ---- */
int shard_array_grow(void **arr, uint32_t *cap, uint32_t need, size_t elem);
int undo_reserve(struct shard *sh, size_t trees, size_t cats);
void undo_touch(struct shard *sh, struct shard_coll *c);
int undo_log_old(void *arg, bool had, const void *old, size_t olen, uint64_t expire_ms);
/* The old-value callback of deletes: notes the removed record's expiry in the struct undo_write,
 * then logs it as undo_log_old does when the shard's frames can be taken back. */
int undo_del_old(void *arg, bool had, const void *old, size_t olen, uint64_t expire_ms);
void undo_catalog(struct shard *sh, uint8_t op, struct shard_coll *c);
void undo_release(struct shard *sh, struct frame_undo *u);
bool undo_rollback(struct shard *sh, struct frame_undo *u);
void undo_free(struct frame_undo *u);

/* ---- views.c ---- */
void view_release(struct shard *sh, struct shard_view *v);
void view_install(struct shard *sh, struct shard_coll *c, struct shard_view *v);
void views_publish_live(struct shard *sh);
void views_capture(struct shard *sh, struct view_cap *k, bool wanted);
void views_publish_cap(struct shard *sh, struct view_cap *k);
bool views_needed(struct shard *sh);
void views_discard_cap(struct shard *sh, struct view_cap *k);
void views_maybe_publish(struct shard *sh);
void views_reclaim(struct shard *sh);
int exec_view_pin(struct shard *sh, struct shard_req *r);
int exec_view_pin_all(struct shard *sh, struct shard_req *r);
/* Release the views a SHARD_VIEW_PIN_ALL request holds in out (it failed after all). */
void views_release_all(struct shard *sh, struct shard_req *r);

/* ---- completion.c ---- */
void req_complete(struct shard_req *r, int rc);
void req_finish(struct shard *sh, struct shard_req *r, int rc);
void req_finish_read(struct shard *sh, struct shard_req *r, int rc);
void pending_complete(struct shard *sh);
void pending_fail(struct shard *sh, int err, bool read_only);

/* ---- shard_ckpt.c ---- */
int shard_ckpt_start(struct shard *sh);
void shard_ckpt_poll(struct shard *sh);
void exec_checkpoint(struct shard *sh, struct shard_req *r);
int shard_load_coll(void *arg, uint32_t id, const char *name, size_t len);
int shard_load_rec(void *arg, const void *key, size_t klen, const void *val, size_t vlen,
                   uint64_t expire_ms);
void exec_backup(struct shard *sh, struct shard_req *r);

/* ---- exec.c ---- */
int shard_replay_apply(void *arg, uint64_t lsn, const struct wal_rec *rec);
void shard_exec(struct shard *sh, struct shard_req *r);
int exec_write_allowed(struct shard *sh);
int exec_coll_for_write(struct shard *sh, const char *name, size_t len, struct shard_coll **out);
int exec_batch(struct shard *sh, struct shard_req *r);
int exec_replay_op(struct shard *sh, const struct wal_rec *rec);
/* The background reclaim deletes c's expired record at key: the delete path (undo, WAL delete
 * record), counted in stats.expired. 0, CS_ENOTFOUND or -ENOMEM (nothing changed). */
int exec_expire_del(struct shard *sh, struct shard_coll *c, const void *key, size_t klen);

/* ---- expire.c ---- */
#define EXPIRE_PERIOD_MS 100u /* a reclaim pass every this long while records may expire */
#define EXPIRE_SCAN_MAX 4096u /* records one pass looks at */
#define EXPIRE_DEL_MAX 128u   /* expired records one pass deletes (a full pass: another at once) */
/* Each loop iteration: run a reclaim pass when one is due, and keep the timer armed while
 * records with an expiry may exist. */
void expire_poll(struct shard *sh);
void expire_free(struct shard *sh);
/* A put or delete of one key of c, its old value logged for the open frame's undo (sync mode)
 * in the same descent: 0, CS_ENOTFOUND (delete of a missing key), or -ENOMEM (nothing changed).
 * The caller reserved undo room (undo_reserve). */
int exec_tree_write(struct shard *sh, struct shard_coll *c, const struct wal_rec *rec);

/* ---- txn.c ---- */
#define TXN_LOCK_BUCKETS 4096u
/* A plain write (put, delete, batch) that touches a locked key waits for the lock: true when r
 * was parked (it runs again when the lock goes). */
bool txn_park(struct shard *sh, struct shard_req *r);
/* A plain get of a key a committed transaction writes but has not installed yet: true with the
 * answer in r (rc in *rc). */
bool txn_get(struct shard *sh, struct shard_req *r, int *rc);
/* The collection may not be dropped while prepared transactions write into it. */
bool txn_coll_busy(const struct shard_coll *c);
void exec_txn_commit1(struct shard *sh, struct shard_req *r);
void exec_txn_prepare(struct shard *sh, struct shard_req *r);
void exec_txn_decide(struct shard *sh, struct shard_req *r);
int exec_txn_indoubt(struct shard *sh, struct shard_req *r);
void exec_txn_forget(struct shard *sh);
int txn_replay(struct shard *sh, uint64_t lsn, const struct wal_rec *rec);
/* Each loop iteration: forget transactions whose outcome is durable on every participant (the
 * walk runs when durable_lsn moved, else once in a while: see txn.c). */
void txn_poll(struct shard *sh);
/* A failed frame was taken back (frame_failed): installs of committed transactions whose outcome
 * was not durable went with it. Install them again, and log their outcomes again when the shard
 * stays writable (ENOSPC): they were acknowledged, and the PREPAREs make them durable. */
void txn_after_rollback(struct shard *sh, bool writable);
/* Checkpoints: the transactions prepared or settling here, as checkpoint entries (see
 * checkpoint.c), appended to job->txn; and loading them back. */
int txn_ckpt_encode(struct shard *sh, struct ckpt_job *job);
int txn_ckpt_load(void *arg, uint8_t type, const uint8_t *p, size_t len);
/* The loop is gone: parked requests complete with CS_ECLOSED, everything is freed. */
void txn_close(struct shard *sh);

/* ---- shard.c ---- */

#endif
