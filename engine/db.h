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
};

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
