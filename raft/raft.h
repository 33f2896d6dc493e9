/* The Raft core: a deterministic consensus state machine in the etcd/raft style.
 *
 * The core does no I/O, reads no clock and draws no random numbers of its own (DESIGN.md §6).
 * Inputs are calls: raft_tick (logical time), raft_step (a received message), raft_propose,
 * raft_propose_conf, raft_read_index, raft_transfer_leader, raft_compact. Outputs come in a
 * "ready" batch (struct raft_ready): hard state and entries to persist, a snapshot to persist
 * and install, messages to send once those are persisted, committed entries to apply and
 * read states. Randomness (election timeouts) comes from a caller-supplied callback, so a
 * simulator can drive a whole cluster from one seed.
 *
 * Section references: "§5.x" is the Raft paper (Ongaro & Ousterhout, 2014); "thesis §x" is
 * Ongaro's dissertation "Consensus: Bridging Theory and Practice" (2014).
 *
 * Roles: RAFT_FOLLOWER, RAFT_PRECANDIDATE (thesis §9.6), RAFT_CANDIDATE, RAFT_LEADER. Every call
 * is allowed in every role unless its comment says otherwise; no call other than raft_advance,
 * the read-only accessors and raft_free is allowed between raft_ready and raft_advance.
 *
 * Membership (thesis §4): a configuration takes effect on the node as soon as its entry is in the
 * node's log (committed or not) and is rolled back if that entry is truncated (thesis §4.1). A
 * change of at most one voter is one entry (single-server change, thesis §4.1); any other change
 * goes through joint consensus (thesis §4.3): a first entry C_old,new, in which elections,
 * commitment and ReadIndex need a majority of C_old and a majority of C_new, then, once it is
 * committed, a second entry C_new that the leader appends by itself (etcd's auto-leave; there is
 * no explicit leave). A voter that becomes a learner stays a voter of C_old while joint and turns
 * learner on leaving (etcd's LearnersNext). New members may join as non-voting learners (thesis
 * §4.2.1) and be promoted once they caught up. A leader proposes a change only when no change
 * is uncommitted, it is not joint, and it committed an entry of its own term (the fix of thesis
 * §4.1 / raft-dev 2015). A leader that is not a voter of C_new keeps leading without counting
 * itself in C_new's majority until C_new commits, then steps down (thesis §4.2.2).
 *
 * Memory: the core keeps the log suffix after the last snapshot in memory (copies of the entry
 * data). The caller compacts it with raft_compact(). Everything the core hands out is a view
 * valid until the next raft_advance() (ready) or until the core is freed (accessors).
 *
 * Threading: a struct raft belongs to one thread (its shard's).
 *
 * Choices (DESIGN.md §6 leaves them open):
 * - The leader counts its own entries toward a quorum only once a ready batch carrying them was
 *   persisted (no parallel leader write, thesis §10.2.1): simpler, one fsync of latency more.
 * - Snapshots travel in chunks (§7, thesis §5.3; see "Snapshots" below): the core holds no
 *   snapshot bytes, the application reads them by offset (cfg.snapshot_read) on the leader and
 *   writes them by offset (the save batch) on the follower.
 * - A leader may remove itself (thesis §4.2.2): it steps down once its removal commits; the
 *   remaining voters elect a new leader after an election timeout (a transfer first avoids it).
 * - Reads are ReadIndex only (no leader leases: they would trust bounded clock drift).
 * - Joint consensus is left automatically as soon as C_old,new commits (etcd's auto-leave): an
 *   explicit leave would only let a caller hold the cluster in the slower joint state.
 * - The uncompacted log lives in memory; the storage is read only when a node starts.
 *
 * Snapshots (§7 InstallSnapshot with its offset and done fields, thesis §5.3): the leader sends a
 * follower whose next entry is compacted its last snapshot as a transfer, a sequence of
 * RAFT_MSG_SNAP chunks of cfg.snapshot_chunk_bytes each. Every chunk carries the snapshot's
 * index, term, configuration and size, the transfer id (new per transfer, so chunks of an older
 * transfer are told apart), its offset and a last-chunk flag; so each chunk can be checked on its
 * own. At most cfg.snapshot_inflight_max chunks are unacknowledged per follower. The follower
 * takes chunks in offset order only; it acknowledges (RAFT_MSG_SNAP_RESP) the bytes it holds in
 * order, after they are saved, and the acknowledgements move the window. A duplicate or
 * reordered chunk is not written; its answer repeats the bytes held, and the first such repeat
 * at a level makes the leader resend from the first unacknowledged chunk (go-back-N, TCP's fast
 * retransmit). When no acknowledgement moved the window for cfg.snapshot_resend_ticks, the leader
 * resends from there too; after an election timeout without one, it abandons the
 * transfer and starts a new one from offset 0. A follower that knows nothing of a transfer whose
 * chunk is not at offset 0 (it restarted, or changed term) refuses it, and the leader starts a
 * new transfer at once. The follower writes each chunk through its save batch (struct
 * raft_batch.chunk) into a partial snapshot; only the save of the last chunk installs it, in the
 * same atomic unit. A transfer ends on the follower when its term or leader changes; its partial
 * snapshot is then never installed: the storage discards it when a chunk at offset 0 arrives and
 * when the node restarts (load). */
#ifndef CS_RAFT_H
#define CS_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* ---- Limits. Exceeding one is an error code (or, for network input, a dropped message). ---- */
#define RAFT_NODES_MAX 16u                   /* voters + learners in one configuration */
#define RAFT_MSG_ENTRIES_MAX 1024u           /* entries in one append message */
#define RAFT_ENTRY_BYTES_MAX (2u << 20)      /* data bytes in one entry */
#define RAFT_SNAPSHOT_BYTES_MAX (1ull << 40) /* data bytes in one snapshot */
#define RAFT_CHUNK_BYTES_MAX (4u << 20)      /* data bytes in one snapshot chunk */
#define RAFT_CHUNK_BYTES_DEFAULT (1u << 20)  /* cfg.snapshot_chunk_bytes when 0 */
#define RAFT_CHUNK_INFLIGHT_DEFAULT 4u       /* cfg.snapshot_inflight_max when 0 */
#define RAFT_CHUNK_RX_BYTES_MAX (16u << 20)  /* received chunk bytes held for one save batch */
#define RAFT_LOG_ENTRIES_MAX (1u << 22)      /* entries kept in memory after the snapshot */
#define RAFT_OUTBOX_MAX 4096u                /* messages queued in one ready batch */
#define RAFT_READS_MAX 256u                  /* ReadIndex requests waiting for a quorum */
#define RAFT_INFLIGHT_MAX 256u               /* upper bound of cfg.inflight_msgs_max */

/* ---- Error codes of the Raft layer: a band of its own next to include/cstore.h's. ---- */
#define RAFT_ENOTLEADER (-30960) /* the call needs the leader role; retry at raft_leader() */
#define RAFT_EBUSY                                                                                 \
    (-30961) /* a change or transfer is in progress, or the leader has not                         \
                yet committed an entry of its term; retry later */

enum raft_role { RAFT_FOLLOWER = 0, RAFT_PRECANDIDATE, RAFT_CANDIDATE, RAFT_LEADER };

enum raft_msg_type {
    RAFT_MSG_APP = 1,         /* AppendEntries request (§5.3); also the probe of thesis §3.5 */
    RAFT_MSG_APP_RESP,        /* AppendEntries result; reject carries the backtracking hint */
    RAFT_MSG_VOTE,            /* RequestVote (§5.2) */
    RAFT_MSG_VOTE_RESP,       /* RequestVote result */
    RAFT_MSG_PREVOTE,         /* PreVote request (thesis §9.6), term = candidate term + 1 */
    RAFT_MSG_PREVOTE_RESP,    /* PreVote result */
    RAFT_MSG_HEARTBEAT,       /* empty AppendEntries carrying commit and a ReadIndex context */
    RAFT_MSG_HEARTBEAT_RESP,  /* heartbeat ack; echoes the context (thesis §6.4) */
    RAFT_MSG_SNAP,            /* InstallSnapshot (§7): one chunk of a snapshot transfer */
    RAFT_MSG_TIMEOUT_NOW,     /* leadership transfer: start an election now (thesis §3.10) */
    RAFT_MSG_READ_INDEX,      /* follower asks the leader for a read index; context = request */
    RAFT_MSG_READ_INDEX_RESP, /* the read index (index) for request context (thesis §6.4.1) */
    RAFT_MSG_SNAP_RESP,       /* snapshot chunks acknowledged; reject: transfer unknown */
    RAFT_MSG_TYPE_END
};

enum raft_entry_type {
    RAFT_ENTRY_NORMAL = 0, /* application data (empty for a new leader's no-op, §8) */
    RAFT_ENTRY_CONF = 1,   /* a whole new configuration, encoded by raft_conf_encode */
};

enum raft_conf_change {
    RAFT_CC_ADD_LEARNER = 1, /* add a non-voting member (thesis §4.2.1) */
    RAFT_CC_PROMOTE,         /* make a caught-up learner a voter (thesis §4.1) */
    RAFT_CC_REMOVE,          /* remove a voter or a learner (thesis §4.1), never the leader */
};

/* A log entry. In the ready batch and in decoded messages, data is a view (see there). */
struct raft_entry {
    uint64_t term;       /* term of the leader that created it */
    uint64_t index;      /* position in the log, from 1 */
    uint8_t type;        /* enum raft_entry_type */
    uint32_t len;        /* bytes of data */
    const uint8_t *data; /* NULL when len is 0 */
};

/* A configuration (thesis §4.1): the voters and the learners; while joint (thesis §4.3,
 * old_n > 0) also the voters of C_old, and those of them that become learners when the joint
 * state is left (etcd's LearnersNext). Validity (raft_conf_valid): 1..RAFT_NODES_MAX voters; ids
 * non-zero and distinct within each list; learners disjoint from voters and from old;
 * learners_next a subset of old, disjoint from voters; learners_next_n > 0 only while joint; at
 * most RAFT_NODES_MAX distinct members (voters, old and learners together). */
struct raft_conf {
    uint8_t voters_n;                       /* 1..RAFT_NODES_MAX: C_new's voters when joint */
    uint8_t learners_n;                     /* non-voting members */
    uint8_t old_n;                          /* joint: C_old's voters (1..); 0: not joint */
    uint8_t learners_next_n;                /* joint: voters of C_old only that turn learner */
    uint64_t voters[RAFT_NODES_MAX];        /* ids of voting members (of C_new when joint) */
    uint64_t learners[RAFT_NODES_MAX];      /* ids of non-voting members */
    uint64_t old[RAFT_NODES_MAX];           /* joint: ids of C_old's voters */
    uint64_t learners_next[RAFT_NODES_MAX]; /* joint: ids in old, not in voters, that become
                                               learners when leaving */
};

/* A snapshot: the state machine at index, which has the given term and configuration. The core
 * keeps only this description; the image's bytes are the application's (see "Snapshots"). */
struct raft_snapshot {
    uint64_t index;        /* last log index the snapshot covers (0: none) */
    uint64_t term;         /* term of that entry */
    struct raft_conf conf; /* configuration as of index */
    uint64_t bytes;        /* size of the opaque image, <= RAFT_SNAPSHOT_BYTES_MAX */
};

/* One chunk of a snapshot transfer: len bytes of the image at offset. */
struct raft_chunk {
    uint64_t transfer;   /* the leader's id of this transfer, non-zero */
    uint64_t offset;     /* where data sits in the image */
    uint32_t len;        /* bytes of data, <= RAFT_CHUNK_BYTES_MAX; 0 only for an empty image */
    bool last;           /* offset + len == the image's bytes */
    const uint8_t *data; /* NULL when len is 0 */
};

/* What must survive a crash besides the log (Figure 2 "persistent state"). */
struct raft_hard_state {
    uint64_t term;   /* currentTerm */
    uint64_t vote;   /* votedFor in term (0: none) */
    uint64_t commit; /* commit index; persisting it is optional, it only saves re-applying */
};

/* A message. Fields not used by a type are 0. */
struct raft_msg {
    uint8_t type;       /* enum raft_msg_type */
    bool reject;        /* *_RESP: request refused */
    uint64_t term;      /* sender's term (PREVOTE: the term it would campaign in) */
    uint64_t from;      /* sender id */
    uint64_t to;        /* recipient id */
    uint64_t index;     /* APP: prevLogIndex; APP_RESP: last matching index or the rejected
                           prevLogIndex; VOTE/PREVOTE: candidate's last index */
    uint64_t log_term;  /* APP: prevLogTerm; VOTE/PREVOTE: candidate's last term;
                           rejected APP_RESP: term at hint (fast backtracking) */
    uint64_t commit;    /* APP/HEARTBEAT: leader commit the recipient may use */
    uint64_t hint;      /* rejected APP_RESP: index the follower suggests to probe;
                           SNAP_RESP: bytes of the image held in order (the next offset) */
    uint64_t context;   /* HEARTBEAT(_RESP): ReadIndex round; VOTE/PREVOTE: 1 = transfer;
                           SNAP_RESP: the snapshot transfer acknowledged */
    uint32_t entries_n; /* APP: entries that follow prevLogIndex */
    const struct raft_entry *entries; /* APP: index of entries[i] is index + 1 + i */
    bool has_snapshot;                /* SNAP only */
    struct raft_snapshot snapshot;    /* SNAP: the snapshot the chunk belongs to (every chunk) */
    struct raft_chunk chunk;          /* SNAP: the chunk; data is a view */
};

/* A linearizable read that may be served once the state machine applied `index`. */
struct raft_read_state {
    uint64_t index;      /* read index (thesis §6.4) */
    uint64_t request_id; /* the caller's id from raft_read_index */
};

/* One batch of work for the caller, handled in this order:
 * 1. persist the received snapshot chunk (if any), the snapshot to install (if any), entries
 *    (storage truncates its suffix from entries[0].index first) and hard_state (if
 *    hard_state_changed) as one atomic unit (raft_ready_persist);
 * 2. send msgs (they may depend on step 1: votes, acks, appended entries);
 * 3. install the snapshot into the state machine, apply committed entries, serve read states
 *    once the state machine applied their index;
 * 4. call raft_advance.
 * All pointers are views owned by the core, valid until raft_advance. */
struct raft_ready {
    bool hard_state_changed;              /* hard_state differs from what was persisted */
    struct raft_hard_state hard_state;    /* to persist */
    const struct raft_snapshot *snapshot; /* to persist and install, or NULL */
    const struct raft_snapshot *chunk_of; /* the snapshot chunk belongs to, or NULL */
    const struct raft_chunk *chunk;       /* received snapshot bytes to write, or NULL */
    const struct raft_entry *entries;     /* to persist (append after truncating the suffix) */
    size_t entries_n;
    const struct raft_msg *msgs; /* to send after persisting */
    size_t msgs_n;
    const struct raft_entry *committed; /* to apply, in order, after persisting */
    size_t committed_n;
    const struct raft_read_state *reads;
    size_t reads_n;
};

/* The durable part of one ready batch, written through struct raft_storage.save as one unit. */
struct raft_batch {
    const struct raft_snapshot *chunk_of;     /* the snapshot chunk belongs to; NULL: no chunk */
    const struct raft_chunk *chunk;           /* §7 receiver steps 2-4: write chunk->len bytes
                                                 at chunk->offset of the partial snapshot of
                                                 transfer chunk->transfer; offset 0 discards any
                                                 partial snapshot first. Written first. */
    const struct raft_snapshot *snapshot;     /* InstallSnapshot (§7 step 5-7): the partial
                                                 snapshot, now whole, becomes the snapshot and
                                                 replaces the whole log before the entries
                                                 below; NULL: none. Comes with the last chunk. */
    const struct raft_entry *entries;         /* drop the suffix from entries[0].index (§5.3),
                                                 then append these */
    size_t entries_n;                         /* 0: no entries */
    const struct raft_hard_state *hard_state; /* NULL: unchanged */
};

/* The narrow storage interface the log lives behind (later a shard's WAL). The core only reads
 * it, in raft_new; raft_ready_persist() writes a ready batch through it. Each callback returns
 * 0 or a negative code. Entries returned by read_entries are views valid until the next call
 * on the storage.
 * - load: hard state, snapshot (index 0: none) and last log index; a partial snapshot (chunks
 *   of a transfer that did not finish) is discarded, never installed;
 * - read_entries: entries lo..hi (inclusive, all after the snapshot) into out[];
 * - save: one batch as one atomic, durable unit (the WAL writes it as one checksummed frame and
 *   one fsync). When save returns 0, all of it survives a crash. When it fails, or the machine
 *   crashes during it, the storage holds after a restart either all of the batch or none of it:
 *   never entries without the hard state that came with them, nor the reverse. A failed save
 *   (I/O error, failed fsync) stops the node: the caller sends none of the batch's messages,
 *   applies none of its entries, never calls raft_advance, frees the struct raft and restarts
 *   from what load returns (the pages of a failed fsync may be gone, fsyncgate).
 * Compaction of the caller's own log (raft_compact) is the caller's business. */
struct raft_storage {
    void *ctx;
    int (*load)(void *ctx, struct raft_hard_state *hs, struct raft_snapshot *snap,
                uint64_t *last_index);
    int (*read_entries)(void *ctx, uint64_t lo, uint64_t hi, struct raft_entry *out);
    int (*save)(void *ctx, const struct raft_batch *b);
};

struct raft_config {
    uint64_t id;                    /* this node, non-zero */
    unsigned election_ticks;        /* election timeout is random in [this, 2*this) (§5.2) */
    unsigned heartbeat_ticks;       /* leader heartbeat period, < election_ticks */
    bool pre_vote;                  /* thesis §9.6 */
    bool check_quorum;              /* thesis §6.2: leader steps down without a quorum; followers
                                       ignore vote requests while they hear from a leader */
    unsigned inflight_msgs_max;     /* appends in flight per follower, 1..RAFT_INFLIGHT_MAX */
    uint64_t inflight_bytes_max;    /* entry bytes in flight per follower (0: no byte limit) */
    uint64_t msg_bytes_max;         /* entry bytes per append message (at least one entry) */
    uint64_t uncommitted_bytes_max; /* proposals beyond this are refused (CS_EFULL) */
    uint32_t log_entries_max;       /* entries kept in memory after the snapshot, at most
                                       RAFT_LOG_ENTRIES_MAX (0: that); more are CS_EFULL */
    uint64_t committed_bytes_max;   /* data bytes of committed entries handed out per ready
                                       batch, always at least one entry (etcd
                                       MaxCommittedSizePerReady); 0: no limit */
    uint32_t snapshot_chunk_bytes;  /* image bytes per snapshot chunk, <= RAFT_CHUNK_BYTES_MAX
                                       (0: RAFT_CHUNK_BYTES_DEFAULT) */
    unsigned snapshot_inflight_max; /* unacknowledged chunks per follower, <= RAFT_INFLIGHT_MAX
                                       (0: RAFT_CHUNK_INFLIGHT_DEFAULT), etcd MaxInflightMsgs */
    unsigned snapshot_resend_ticks; /* resend unacknowledged chunks after this many ticks
                                       without progress, < election_ticks (0: 2 * heartbeat
                                       ticks, at most election_ticks - 1) */
    /* Leader: copy len bytes of the image of this node's snapshot at index, from offset, into
     * buf. 0, or a negative code (the image is gone, say replaced by a newer compaction): the
     * transfer is abandoned and a new one starts from the snapshot then current. Called from
     * raft_step and raft_tick. May be NULL on a node that never sends a non-empty snapshot. */
    int (*snapshot_read)(void *ctx, uint64_t index, uint64_t offset, uint8_t *buf, uint32_t len);
    void *snapshot_ctx;
    uint64_t (*rand)(void *ctx); /* injected randomness for election timeouts */
    void *rand_ctx;
    struct raft_conf bootstrap; /* configuration at index 0 (same on every node) */
};

struct raft;

/* Create a node. storage may be NULL (a new, empty node); else its state is loaded (restart,
 * §5.1 "updated on stable storage before responding"). The node starts as a follower (§5.2);
 * its configuration is the newest in its log, else its snapshot's, else cfg->bootstrap, which
 * stands for the configuration at index 0 and must be the same on every node. cfg is copied.
 * Errors: CS_EINVAL (bad config), CS_ECORRUPT (storage inconsistent), -ENOMEM, or the storage's
 * error. On error *out is NULL. */
CS_MUST_CHECK int raft_new(const struct raft_config *cfg, const struct raft_storage *storage,
                           struct raft **out);
void raft_free(struct raft *r);

/* Advance logical time by one tick: elections (§5.2), heartbeats (§5.2), CheckQuorum
 * (thesis §6.2), transfer timeout (thesis §3.10), snapshot retry. Any role. */
void raft_tick(struct raft *r);

/* Feed a received message (already decoded). Any role. Messages from stale terms, unknown
 * types or malformed fields are ignored (returns 0): the network may drop, duplicate and
 * reorder. A message no correct sender sends (malformed, or a heartbeat committing past our last
 * index) is dropped and counted (raft_msgs_refused): bytes from the network are never trusted
 * enough to assert on. CS_EINVAL if m->to is not this node. */
CS_MUST_CHECK int raft_step(struct raft *r, const struct raft_msg *m);

/* Append data as a new entry (§5.3). Leader only (RAFT_ENOTLEADER otherwise); RAFT_EBUSY during
 * a leadership transfer; CS_EFULL over uncommitted_bytes_max; CS_EINVAL if len is over
 * RAFT_ENTRY_BYTES_MAX. data is copied. *index (may be NULL) gets the entry's index: the
 * proposal is committed when an entry at that index with the same term is applied. */
CS_MUST_CHECK int raft_propose(struct raft *r, const void *data, uint32_t len, uint64_t *index);

/* Propose a single-server membership change (thesis §4.1, §4.2.1): raft_propose_members with
 * the configuration in force changed by one node. Leader only. RAFT_EBUSY as there, and
 * (PROMOTE) if the learner has not caught up with the commit index. CS_EINVAL for a change that
 * does not apply (adding a member, promoting a voter, removing an absent node, removing the last
 * voter, over RAFT_NODES_MAX). Removing the leader itself is allowed (thesis §4.2.2). */
CS_MUST_CHECK int raft_propose_conf(struct raft *r, enum raft_conf_change type, uint64_t node,
                                    uint64_t *index);

#define RAFT_CONF_JOINT                                                                            \
    1u /* raft_propose_members: go through C_old,new even for a change of                          \
          at most one voter */

/* Propose the configuration `target` (not joint: old_n == 0), any change of voters and learners
 * (thesis §4.3). A change of at most one voter without RAFT_CONF_JOINT in flags is one entry
 * (thesis §4.1); any other change appends C_old,new (voters of both, old = the voters in force,
 * a voter that turns learner listed in learners_next), and the leader appends C_new by itself
 * once C_old,new is committed (auto-leave). Leader only (RAFT_ENOTLEADER). RAFT_EBUSY while a
 * change is uncommitted or the configuration is joint (until C_new is appended), before the
 * leader committed an entry of its term, during a transfer, or when a learner that would vote
 * has not caught up with the commit index (thesis §4.2.1; a node new to the configuration may
 * become a voter at once). CS_EINVAL if target is invalid, joint, the same as the configuration
 * in force, or has more than RAFT_NODES_MAX members together with the voters in force; on an
 * error nothing changed. *index (may be NULL) gets the index of the (first) entry. target is
 * copied. A node new to the configuration that votes at once can catch up from the log only:
 * every snapshot up to the change leaves it out, and a follower refuses those; if the leader
 * compacted to its applied index and the change needs that node's vote to commit, nothing
 * commits again. Add a node as a learner first (thesis §4.2.1). */
CS_MUST_CHECK int raft_propose_members(struct raft *r, const struct raft_conf *target,
                                       unsigned flags, uint64_t *index);

/* Start a linearizable read (ReadIndex, thesis §6.4). On the leader, the read state with this
 * request_id appears in a later ready once a quorum confirmed leadership; a read that arrives
 * before the leader committed an entry of its term waits for that commit (thesis §6.4 step 1)
 * and is then started; CS_EFULL over RAFT_READS_MAX pending. On a
 * follower or learner that knows the leader, the request is forwarded (thesis §6.4.1) and the
 * read state appears when the leader answers; RAFT_ENOTLEADER when no leader is known. A read
 * is dropped silently if the leader steps down or a message is lost: the caller retries after a
 * timeout of its own. Serve a read state once the state machine applied its index. */
CS_MUST_CHECK int raft_read_index(struct raft *r, uint64_t request_id);

/* Hand leadership to voter `target` (thesis §3.10). Leader only; proposals are refused
 * (RAFT_EBUSY) until it completes or times out after an election timeout. The target gets
 * TimeoutNow once it has caught up, and again at each heartbeat answer while it stays caught up
 * (a lost TimeoutNow is resent). A repeated request for the same target sends again (TimeoutNow
 * or an append) and keeps the first request's deadline. CS_EINVAL if target is not a voter or is
 * this node. */
CS_MUST_CHECK int raft_transfer_leader(struct raft *r, uint64_t target);

/* The transport's verdict on an InstallSnapshot chunk to node (leader only; ignored otherwise):
 * on failure the transfer is abandoned and the follower goes back to probing at once instead of
 * after an election timeout. */
void raft_report_snapshot(struct raft *r, uint64_t node, bool ok);

/* Log compaction (§7): drop the entries up to index, which the state machine has applied and
 * which are persisted; the caller holds the state machine image at index, of `bytes` bytes, and
 * hands it out by offset through cfg.snapshot_read. The caller saves the same snapshot to its
 * storage. CS_EINVAL if index is not in (snapshot index, applied] or bytes is over
 * RAFT_SNAPSHOT_BYTES_MAX. */
CS_MUST_CHECK int raft_compact(struct raft *r, uint64_t index, uint64_t bytes);

/* Ready batch (see struct raft_ready). Any role. raft_has_ready tells whether raft_ready would
 * return work. raft_ready may not be called again before raft_advance, and between the two no
 * other mutating call is allowed. raft_advance tells the core that the whole batch was handled
 * (persisted, sent, applied): it releases the batch's views, counts the leader's own entries
 * as replicated (§5.3) and a candidate's vote for itself as cast (a single voter becomes leader
 * here, never before its term and vote are on disk) and may queue messages for the next batch.
 * This is how §5.1 ("respond to RPCs only after updating stable storage") is kept: a message
 * never leaves before the state it depends on, because both ride in one batch that is persisted
 * before it is sent. */
bool raft_has_ready(const struct raft *r);
void raft_ready(struct raft *r, struct raft_ready *rd);
void raft_advance(struct raft *r);

/* Write a ready batch's snapshot, entries and hard state through a storage as one atomic unit
 * (one call of st->save; step 1 above). On an error the caller must stop the node (see struct
 * raft_storage): the batch's messages promise state that may not be on disk. */
CS_MUST_CHECK int raft_ready_persist(const struct raft_ready *rd, const struct raft_storage *st);

/* Accessors (any role; views valid until the next mutating call). */
enum raft_role raft_role(const struct raft *r);
uint64_t raft_id(const struct raft *r);
uint64_t raft_term(const struct raft *r);
uint64_t raft_leader(const struct raft *r); /* 0 when unknown */
uint64_t raft_commit(const struct raft *r);
uint64_t raft_applied(const struct raft *r);
/* Messages raft_step dropped since raft_new because they broke a rule no correct sender breaks:
 * malformed fields, or a heartbeat whose commit index is past this node's last index (the
 * sender believes we hold entries we do not: a bug in it, or a log lost under us). */
uint64_t raft_msgs_refused(const struct raft *r);
uint64_t raft_first_index(const struct raft *r); /* first entry in memory (snapshot index + 1) */
uint64_t raft_last_index(const struct raft *r);
const struct raft_snapshot *raft_snapshot(const struct raft *r);
const struct raft_conf *raft_conf(const struct raft *r);
/* Entry at index, or NULL if compacted or beyond the last index. */
const struct raft_entry *raft_entry_at(const struct raft *r, uint64_t index);
/* Term of the entry at index (the snapshot's term at its index) into *term; false (and 0) if
 * the index is compacted away or beyond the last one. */
bool raft_term_at(const struct raft *r, uint64_t index, uint64_t *term);

/* Configurations. */
/* A voter: of C_new or, while joint, of C_old (it votes and may campaign). */
bool raft_conf_is_voter(const struct raft_conf *c, uint64_t id);
bool raft_conf_is_learner(const struct raft_conf *c, uint64_t id);
bool raft_conf_is_joint(const struct raft_conf *c); /* C_old,new (thesis §4.3) */
/* Check a configuration's validity rules (see struct raft_conf). */
bool raft_conf_valid(const struct raft_conf *c);
#define RAFT_CONF_BYTES_MAX (2u + 8u * RAFT_NODES_MAX + 5u)
/* Encode into buf (at least RAFT_CONF_BYTES_MAX bytes); returns the bytes written. Layout in
 * raft_msg.c: u8 voters_n, u8 learners_n, voters then learners as little-endian u64; a joint
 * configuration adds C_old as masks over the voters and the ids of C_old's other voters. */
size_t raft_conf_encode(const struct raft_conf *c, uint8_t *buf);
/* Decode and validate. CS_ECORRUPT on any bad byte or length. */
CS_MUST_CHECK int raft_conf_decode(const uint8_t *buf, size_t len, struct raft_conf *c);

/* ---- Wire format (raft_msg.c) ---- */
#define RAFT_FRAME_HEADER_BYTES 24u
#define RAFT_FRAME_BYTES_MAX (72u << 20)
/* Bytes raft_msg_encode needs for m. */
size_t raft_msg_encoded_bytes(const struct raft_msg *m);
/* Encode m into buf (cap bytes); *len gets the frame size. CS_EINVAL if cap is too small or a
 * field is over a limit. */
CS_MUST_CHECK int raft_msg_encode(const struct raft_msg *m, uint8_t *buf, size_t cap, size_t *len);
/* Decode one frame of exactly len bytes. Never trusts a length; CS_ECORRUPT on any bad byte,
 * -ENOMEM if the entry array cannot be allocated. On success m->entries (allocated) must be
 * released with raft_msg_release; entry and snapshot data are views into buf. */
CS_MUST_CHECK int raft_msg_decode(const uint8_t *buf, size_t len, struct raft_msg *m);
void raft_msg_release(struct raft_msg *m);
const char *raft_msg_type_name(uint8_t type);

#endif
