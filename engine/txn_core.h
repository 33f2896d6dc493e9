/* The decisions of cross-shard commit, as pure functions (no I/O, no clock, no threads): how the
 * coordinator turns votes into an outcome, which request may wait for a prepared transaction's
 * lock, and how recovery decides the transactions the logs hold in doubt. engine/txn.c drives them
 * on real shards; tests/sim/txn_sim.c drives the same functions on simulated shards with crashes
 * between any two steps. */
#ifndef CS_TXN_CORE_H
#define CS_TXN_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* ---- votes ---- */

struct txn_votes {
    unsigned expected; /* participants */
    unsigned got;      /* votes in */
    int rc;            /* the answer so far: 0, CS_ECONFLICT, or the first error */
    bool error;        /* some vote was an error (not a conflict) */
};

void txn_votes_init(struct txn_votes *v, unsigned participants);
/* One participant's vote: 0 (yes: its PREPARE is durable), CS_ECONFLICT, or an error. */
void txn_votes_add(struct txn_votes *v, int vote);
/* Once every vote is in: commit iff all are yes. *abort_durable: the abort must be durable on the
 * participants that can write it before the caller is answered (a vote was an error, so that
 * participant's PREPARE may be on disk although its write failed). Returns the caller's answer. */
int txn_votes_decide(const struct txn_votes *v, bool *commit, bool *abort_durable);

/* ---- waiting for a prepared transaction ----
 * A transaction's request (a one-shard commit, or a PREPARE) that meets a key locked by a
 * prepared transaction is parked on that lock until the holder's outcome is installed, and then
 * validated again from the start. Deadlock-free by transaction age, in the manner of wound-wait
 * (Rosenkrantz, Stearns, Lewis, "System level concurrency control for distributed database
 * systems", ACM TODS 3(2), 1978): a request waits only for transactions older than itself (a
 * smaller id), so every edge of the waits-for graph goes from a larger id to a smaller one and
 * no cycle can form. Where wound-wait would wound the younger holder, a holder here cannot be
 * wounded (its PREPARE is a vote that may already have decided the commit), so the older
 * requester dies instead (CS_ECONFLICT) and its retry, with a new and so younger id, may wait.
 * A one-shard commit holds no lock anywhere while it waits, so it may wait for any holder; and
 * anyone may wait for a holder whose outcome is decided already (it waits for nothing more).
 * Each wait ends when the holder's outcome is installed, which needs only the holder's own
 * votes: each is at once or waits in turn only for transactions older still, so a wait lasts
 * about one fsync per link of a chain of strictly older transactions. Limits bound the rest: a
 * request is parked at most TXN_WAIT_PARKS_MAX times, and at most TXN_WAIT_QUEUE_MAX
 * transaction requests wait on one lock; beyond either, CS_ECONFLICT at once.
 *
 * ORDERED WRITES. A blind write (a commit with writes and no reads or ranges: cs_write of a
 * batch over several shards, MSET) has nothing to validate and is never refused: when its
 * first, parallel attempt is refused (txn_retry_ordered), the coordinator runs it again as an
 * ordered write, with a new id: one PREPARE at a time, in increasing shard order, each sent
 * once the one before is durable. An ordered PREPARE waits for any holder, without limit, so
 * it is refused only for an error. It holds locks only on shards below the one it waits on, and:
 *   - no transaction (id != 0) ever waits for an ordered write that is undecided (it would wait
 *     for a write that may itself wait): it dies instead (met_ordered), and so does one that
 *     meets an ordered write's reservation (below). One-shard commits and plain writes may wait
 *     (they hold nothing);
 *   - so a waits-for chain that reaches an ordered write goes on only through ordered writes,
 *     each waiting on a shard above the one where it holds the lock waited for: the shard index
 *     grows along the chain, which thus cannot close into a cycle; it ends at a holder that is
 *     not ordered, whose chain is the age rule's (finite, above). No deadlock.
 * Starvation: on each shard at most one ordered write waits at a time (the head); the others
 * queue behind it in arrival order (FIFO) without looking at locks. The head reserves every key
 * it writes there: from then on no other transaction takes a lock on those keys (a transaction
 * that meets the reservation dies; one-shard commits and plain writes wait), so the head waits
 * only for the holders present when it reserved, each of which ends (above), and then locks.
 * An ordered write thus passes each shard after a bounded number of heads before it, each
 * waiting a bounded time: it commits, whatever the load. The price: one fsync per participant
 * in sequence, and transactions that meet it undecided retry. */
#define TXN_WAIT_PARKS_MAX 8u  /* times one request may be parked before it is refused */
#define TXN_WAIT_QUEUE_MAX 32u /* transaction requests parked on one lock at a time */

/* Whether a request may be parked. id: the requesting transaction (0: a one-shard commit);
 * ordered: the request is an ordered write's PREPARE (it always may); holder_max: the largest id
 * among the prepared transactions it would wait for whose outcome is not decided yet (0: none);
 * met_ordered: among them is an undecided ordered write, or a reservation; parks: times it was
 * parked already; queued: transaction requests parked on that lock now. */
bool txn_may_wait(uint64_t id, bool ordered, uint64_t holder_max, bool met_ordered, unsigned parks,
                  unsigned queued);

/* Whether a commit answered rc runs again as an ordered write: a blind write (writes, no reads
 * or ranges) over several shards whose parallel attempt was refused for a conflict. */
bool txn_retry_ordered(bool blind, bool ordered, unsigned participants, int rc);

/* ---- recovery ---- */

/* What one shard's log says of one transaction (after its checkpoint and replay). */
enum txn_report_state {
    TXN_REPORT_PREPARED = 0,  /* its PREPARE, and no outcome */
    TXN_REPORT_COMMITTED = 1, /* its COMMIT (or a checkpoint's settling commit) */
    TXN_REPORT_ABORTED = 2,   /* its ABORT */
};

struct txn_resolve_entry {
    uint64_t id;     /* transaction */
    uint16_t nparts; /* participants named by a PREPARE (0 until one reports it) */
    uint16_t *parts; /* their shard indexes */
    uint8_t outcome; /* 0 unknown, or TXN_REPORT_COMMITTED / TXN_REPORT_ABORTED */
    uint64_t *held;  /* bit per shard: holds its PREPARE without an outcome */
};

struct txn_resolver {
    unsigned shards;             /* shards of the database */
    struct txn_resolve_entry *e; /* transactions reported */
    size_t n, cap;               /* used, allocated */
};

void txn_resolver_init(struct txn_resolver *r, unsigned shards);
void txn_resolver_free(struct txn_resolver *r);
/* Add one report. CS_ECORRUPT when reports contradict each other (a shard outside the database,
 * two participant lists for one id, a PREPARE that does not name its own shard, a commit and an
 * abort of the same id); -ENOMEM. */
CS_MUST_CHECK int txn_resolver_add(struct txn_resolver *r, unsigned shard, uint64_t id,
                                   uint8_t state, uint16_t nparts, const uint16_t *parts);
/* The decision for entry i: committed iff some participant logged COMMIT, or none logged ABORT
 * and every participant its PREPARE names holds it. */
bool txn_resolver_commits(const struct txn_resolver *r, size_t i);
/* Whether shard s must be told entry i's outcome (it holds the PREPARE in doubt). */
bool txn_resolver_holds(const struct txn_resolver *r, size_t i, unsigned s);

#endif
