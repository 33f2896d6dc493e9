/* Shared declarations of the Raft simulator (tests/sim): the crash-surviving store. */
#ifndef CS_SIM_H
#define CS_SIM_H

#include "raft/raft.h"

struct sim_store {
    struct raft_hard_state hs;
    struct raft_snapshot snap; /* owned data */
    struct raft_entry *ents;   /* owned data; index snap.index + 1 + i */
    size_t n;
    size_t cap;
};

void sim_store_init(struct sim_store *s);
void sim_store_destroy(struct sim_store *s);
uint64_t sim_store_last(const struct sim_store *s);
/* Replace the prefix up to snap->index by the snapshot (log compaction, not an install). */
int sim_store_compact(struct sim_store *s, const struct raft_snapshot *snap);
void sim_store_ops(struct sim_store *s, struct raft_storage *ops);

#endif
