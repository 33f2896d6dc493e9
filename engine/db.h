/* The database handle and the plumbing every engine module shares: argument checks, the router
 * (key -> shard), and the blocking round trip of a request to a shard. */
#ifndef CS_DB_H
#define CS_DB_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "cstore.h"
#include "engine/options.h"
#include "shards/shard.h"

/* Metrics the engine records on application threads, per shard (engine/metrics.c exports
 * them), with relaxed atomic adds (hist_record_mw) from any thread. Gets that a published view
 * answers are the hottest path of all (about half a microsecond): each is counted, but only one
 * in DB_VIEW_GET_SAMPLE of each thread's is timed (two clock reads and two atomic adds cost
 * about 70 ns, 12% of such a get; sampled, under 2%). They are striped by thread (db_stripe)
 * so that the readers of one shard do not all add to the same cache lines. */
#define DB_VIEW_STRIPES 4u
#define DB_VIEW_GET_SAMPLE 16u /* a thread times one in this many of its view-answered gets */
struct db_view_stripe {
    _Alignas(64) uint64_t gets; /* gets answered (atomic) */
    struct hist sampled;        /* the timed ones: lookup and copy, ns */
};
struct db_shard_metrics {
    struct db_view_stripe view[DB_VIEW_STRIPES]; /* gets the shard's published view answered */
    struct hist commit; /* commits whose first participant is the shard (engine/txn.c), ns */
};

struct cs_db {
    char dir[PATH_MAX];        /* data folder */
    struct cs_options opt;     /* options in force */
    unsigned nshards;          /* shard count */
    struct shard **shards;     /* nshards shards */
    int lock_fd;               /* holds dir/LOCK */
    bool unclean;              /* the last open of the folder did not close cleanly */
    pthread_mutex_t ddl;       /* serialises collection create/drop (cold path) */
    struct io_fault *fault;    /* fault-injection plan (option `fault` or $CSTORE_FAULT), or NULL */
    _Atomic unsigned yielders; /* blocking callers in their sched_yield wait (at most one) */
    _Atomic unsigned txn_waiters; /* blocking commits waiting for a phase (engine/txn.c) */
    uint64_t txn_base;            /* transaction ids: a random base drawn at open... */
    _Atomic uint64_t txn_next;    /* ...plus a counter (engine/txn.c) */
    _Atomic int xshard_used;      /* a cross-shard commit was decided since open */
    struct xgate {                /* cursors against cross-shard installs (engine/txn.c) */
        pthread_mutex_t mu;
        pthread_cond_t cv;
        unsigned installing; /* commits between their decision and their last install */
        unsigned pinning;    /* cursors taking their views */
        unsigned waiting;    /* cursors waiting for the installs to end */
    } xgate;
    struct db_shard_metrics *metrics; /* nshards entries: histograms of application threads */
};

/* The cut a multi-shard reader takes (engine/txn.c): pin() runs while no cross-shard commit is
 * between its decision and its last install, so everything it pins holds each such transaction
 * whole or not at all. Until the first cross-shard commit it runs ungated; if one was decided
 * meanwhile, unpin() undoes it and pin() runs again under the gate. Returns pin()'s result. */
CS_MUST_CHECK int xgate_cut(cs_db *db, int (*pin)(void *arg), void (*unpin)(void *arg), void *arg);
/* Pin coll's view on every shard into views[nshards] (NULL where the collection is absent; a
 * private snapshot where the published view misses); on error nothing stays pinned. */
CS_MUST_CHECK int db_pin_views(cs_db *db, const char *coll, uint16_t nlen,
                               struct shard_view **views);
void db_unpin_views(cs_db *db, struct shard_view **views);

/* Transaction cursors (engine/cursor.c and engine/txn.c). */
struct cursor_ov;
/* A cursor over coll for t: with ro_views (a read-only transaction's snapshot, borrowed) it reads
 * them; otherwise it pins fresh views, shows t's own writes ov[nov] (sorted by key) over them,
 * and records every range it walks into t. It takes ov (freed with it, or at once on error). */
CS_MUST_CHECK int cursor_open_txn(cs_db *db, const char *coll, uint16_t nlen, cs_txn *t,
                                  struct shard_view **ro_views, struct cursor_ov *ov, size_t nov,
                                  cs_cursor **out);
struct cursor_ov *cursor_ov_new(size_t n);
void cursor_ov_free(struct cursor_ov *ov, size_t n); /* and the first n entries' bytes */
void cursor_ov_set(struct cursor_ov *ov, size_t i, uint8_t *key, uint32_t klen, uint8_t *val,
                   uint32_t vlen, bool del);
void cursor_flush_walks(cs_cursor *c);
void cursor_detach(cs_cursor *c); /* flush, then record no more (the transaction ends) */
int cursor_error(const cs_cursor *c);
cs_cursor *cursor_next_of_txn(cs_cursor *c);
void cursor_set_next_of_txn(cs_cursor *c, cs_cursor *next);
/* engine/txn.c: a range a transaction cursor walked on shard (bounds copied); the cursor's
 * close. */
CS_MUST_CHECK int txn_cursor_range(cs_txn *t, unsigned shard, const struct shard_txn_range *r);
void txn_cursor_closed(cs_txn *t, cs_cursor *c);

/* A request whose submitter blocks until it completes (futex wait after a short spin). */
struct waiter {
    struct shard_req req;   /* must stay first */
    _Atomic uint32_t state; /* WAITER_PENDING, WAITER_SLEEPING, WAITER_DONE */
};

void waiter_init(struct waiter *w, enum shard_op op);
/* Wait for w's completion: poll a moment first when spin (answers that need no disk flush come
 * back within microseconds), then sleep on the futex. */
void waiter_wait(struct waiter *w, bool spin);
/* Submit w to shard and wait for its completion; returns w->req.rc. */
int db_call(cs_db *db, unsigned shard, struct waiter *w);

unsigned db_shard_of(const cs_db *db, const void *key, size_t klen);
/* Before a view lookup: whether the calling thread times this one (one in DB_VIEW_GET_SAMPLE),
 * with *start_ns set then. */
bool db_view_get_timed(uint64_t *start_ns);
/* A get that shard's published view answered: count it, and record its latency since start_ns
 * when timed (any thread). */
void db_view_get_done(cs_db *db, unsigned shard, bool timed, uint64_t start_ns);
/* Argument checks shared by the blocking, batch and session calls. */
CS_MUST_CHECK int db_check_name(const char *coll, uint16_t *len);
CS_MUST_CHECK int db_check_key(const void *key, size_t klen);
CS_MUST_CHECK int db_check_value(const void *val, size_t vlen);
/* CS_EINVAL for an expiry past CS_EXPIRE_MAX_MS, else 0. */
CS_MUST_CHECK int db_check_expiry(uint64_t expire_ms);
/* All three, for a request on one record; *nlen receives the name's length. */
CS_MUST_CHECK int db_check_record(const char *coll, const void *key, size_t klen, const void *val,
                                  size_t vlen, uint16_t *nlen);

#endif
