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
    uint64_t txn_base;         /* transaction ids: a random base drawn at open... */
    _Atomic uint64_t txn_next; /* ...plus a counter (engine/txn.c) */
    _Atomic int xshard_used;   /* a cross-shard commit was decided since open */
    struct xgate {             /* cursors against cross-shard installs (engine/txn.c) */
        pthread_mutex_t mu;
        pthread_cond_t cv;
        unsigned installing;   /* commits between their decision and their last install */
        unsigned pinning;      /* cursors taking their views */
        unsigned waiting;      /* cursors waiting for the installs to end */
    } xgate;
};

/* The cut a multi-shard reader takes (engine/txn.c): between xgate_pin_begin and _end no
 * cross-shard commit is between its decision and its last install, so every view pinned meanwhile
 * holds each such transaction whole or not at all. _begin returns whether the gate was taken
 * (false: no cross-shard commit was ever decided; the caller checks xgate_still_unused after
 * pinning and starts over gated if one was). */
bool xgate_pin_begin(cs_db *db);
/* Pin coll's view on every shard into views[nshards] (NULL where the collection is absent; a
 * private snapshot where the published view misses); on error nothing stays pinned. */
CS_MUST_CHECK int db_pin_views(cs_db *db, const char *coll, uint16_t nlen,
                               struct shard_view **views);
void db_unpin_views(cs_db *db, struct shard_view **views);
bool xgate_still_unused(cs_db *db);
void xgate_pin_end(cs_db *db, bool gated);

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
/* Argument checks shared by the blocking, batch and session calls. */
CS_MUST_CHECK int db_check_name(const char *coll, uint16_t *len);
CS_MUST_CHECK int db_check_key(const void *key, size_t klen);
CS_MUST_CHECK int db_check_value(const void *val, size_t vlen);
/* All three, for a request on one record; *nlen receives the name's length. */
CS_MUST_CHECK int db_check_record(const char *coll, const void *key, size_t klen, const void *val,
                                  size_t vlen, uint16_t *nlen);

#endif
