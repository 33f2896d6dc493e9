/* Transactions inside the engine: the commit of a set of writes and validated reads over any
 * shards (cs_txn_commit, and cs_write of a batch that spans shards), and the resolution of
 * transactions a crash left in doubt (at open). See engine/txn.c. */
#ifndef CS_ENGINE_TXN_H
#define CS_ENGINE_TXN_H

#include "engine/db.h"

struct txn_op {
    unsigned shard;           /* the key's shard */
    struct shard_batch_op op; /* the write (buffers borrowed for the call) */
};
struct txn_rd {
    unsigned shard;           /* the key's shard */
    struct shard_txn_read rd; /* what the read saw (buffers borrowed for the call) */
};
struct txn_rg {
    unsigned shard;            /* the shard the range was read on */
    struct shard_txn_range rg; /* what a transaction cursor saw there (buffers borrowed) */
};

/* Commit writes and validate reads atomically: 0, CS_ECONFLICT (a read no longer holds, or a key
 * is locked by a prepared transaction: nothing was applied; retry), or an error (nothing was
 * applied, except after an install failure, which fences the shard: see txn.c). */
CS_MUST_CHECK int txn_commit_ops(cs_db *db, const struct txn_op *ops, size_t nops,
                                 const struct txn_rd *rds, size_t nreads);
/* A commit driven step by step (cs_txn_commit, and sessions: cs_session_commit). _new takes t
 * (freed with the commit, or at once on error); notify(arg) is called on a shard thread each time
 * a step's requests are all complete: it must only signal. The driver calls txn_commit_step
 * first to start and then after each notify, on its own thread; it returns 1 while the commit
 * is in flight, 0 when done with the answer in *rc, and TXN_STEP_LATER (only after
 * txn_commit_nowait) when the step could not run without waiting: no notify comes then, the
 * driver calls txn_commit_step again soon. */
struct txn_commit;
CS_MUST_CHECK int txn_commit_new(cs_txn *t, void (*notify)(void *arg), void *arg,
                                 struct txn_commit **out);
#define TXN_STEP_LATER 2
/* The driver must never wait in a step (it is a shard thread: the server's sessions): where the
 * decision would wait at the cross-shard gate for readers cutting the shards (whose cut may need
 * this very thread), the step returns TXN_STEP_LATER instead. */
void txn_commit_nowait(struct txn_commit *c);
int txn_commit_step(struct txn_commit *c, int *rc);
void txn_commit_free(struct txn_commit *c);

/* At open: decide and install every transaction the shards' logs hold in doubt. */
CS_MUST_CHECK int txn_recover(cs_db *db);

#endif
