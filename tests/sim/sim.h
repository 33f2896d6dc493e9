/* Shared declarations of the Raft simulator (tests/sim): the crash-surviving store. */
#ifndef CS_SIM_H
#define CS_SIM_H

#include "raft/raft.h"

/* A fault armed for the next save (consumed by it). */
enum sim_disk_fault {
    SIM_DISK_OK = 0,
    SIM_DISK_EIO,   /* the write fails before anything lands: -EIO */
    SIM_DISK_FSYNC, /* the write lands in the page cache, its fsync fails: -EIO; a crash loses
                       it (the pages of a failed fsync are gone, fsyncgate) */
    SIM_DISK_TORN,  /* the machine loses power during the write: a prefix of the batch's frame
                       lands (torn); the caller crashes the node at once */
};

/* The log image: hard state, last snapshot, entries after it. */
struct sim_image {
    struct raft_hard_state hs;
    struct raft_snapshot snap; /* its description */
    uint8_t *snap_data;        /* owned: snap.bytes bytes of the state machine image */
    struct raft_entry *ents;   /* owned data; index snap.index + 1 + i */
    size_t n;
    size_t cap;
};

/* What a restart must find: the image after the last save that returned 0. */
struct sim_mark {
    struct raft_hard_state hs;
    uint64_t snap_index;
    uint64_t last;
    uint64_t last_term;
};

/* A snapshot being received in chunks (raft.h "Snapshots"): never part of the image until the
 * save of its last chunk installs it; a crash or a restart discards it. */
struct sim_partial {
    uint64_t index;    /* snapshot it was begun for (offset 0) */
    uint64_t transfer; /* transfer it was begun for */
    uint8_t *data;     /* owned */
    uint64_t len;      /* bytes written (the highest offset + len) */
    uint64_t cap;
};

struct sim_store {
    struct sim_partial partial; /* snapshot chunks written, not installed */
    struct sim_image img;       /* what reads see: the disk plus the page cache */
    struct sim_image undo;      /* valid when dirty: the image before the first unsynced save */
    bool dirty;                 /* img holds writes a crash loses (failed fsync, torn write) */
    uint8_t fault;              /* enum sim_disk_fault armed for the next save */
    uint32_t torn_entries;      /* SIM_DISK_TORN: entries of the batch that land */
    uint64_t saves;             /* saves that returned 0 */
    struct sim_mark mark;       /* image after the last save that returned 0 */
};

void sim_store_init(struct sim_store *s);
void sim_store_destroy(struct sim_store *s);
/* Last index of what reads see (the page cache included). */
uint64_t sim_store_last(const struct sim_store *s);
/* Hard state and last index that survive a crash now (the page cache excluded). */
const struct raft_hard_state *sim_store_durable_hs(const struct sim_store *s);
uint64_t sim_store_durable_last(const struct sim_store *s);
/* Does the log that survives a crash now hold the entry (index, term)? An index its snapshot
 * covers counts as held. */
bool sim_store_durable_holds(const struct sim_store *s, uint64_t index, uint64_t term);
/* A crash: what was not durable is lost; a torn frame fails its checksum at recovery and its
 * whole batch goes (the batch is one atomic unit, struct raft_storage). */
void sim_store_crash(struct sim_store *s);
/* The image a restart finds as a mark, to compare with the last good save's. */
struct sim_mark sim_store_mark_now(const struct sim_store *s);
/* Replace the prefix up to snap->index by the snapshot, whose image is data (snap->bytes bytes,
 * copied): log compaction, not an install. */
int sim_store_compact(struct sim_store *s, const struct raft_snapshot *snap, const uint8_t *data);
void sim_store_ops(struct sim_store *s, struct raft_storage *ops);

#endif
