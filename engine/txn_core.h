/* The decisions of cross-shard commit, as pure functions (no I/O, no clock, no threads): how the
 * coordinator turns votes into an outcome, and how recovery decides the transactions the logs
 * hold in doubt. engine/txn.c drives them on real shards; tests/sim/txn_sim.c drives the same
 * functions on simulated shards with crashes between any two steps. */
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
