/* Raft internals shared by the files of raft/ (like SQLite's btreeInt.h): the node's state,
 * the per-member progress and the functions one file calls in another. raft.h is the public
 * interface; nothing outside raft/ includes this header.
 *
 * The files (each opens with what it implements and the sections it cites):
 * - raft.c: the core: message dispatch (raft_step), ticks, client calls, the outbox, the
 *   ready batch and the life cycle;
 * - election.c: roles, elections and votes (§5.2, §5.4.1, thesis §9.6, §3.10);
 * - replication.c: AppendEntries, heartbeats, InstallSnapshot and commitment (§5.3, §5.4.2, §7);
 * - progress.c: what the leader knows of each member and its flow control (thesis §3.5);
 * - log.c: the in-memory log, snapshots and compaction, loading from storage (§5.3, §7);
 * - configuration.c: membership (thesis §4.1, §4.2.1);
 * - read.c: ReadIndex (thesis §6.4);
 * - raft_msg.c: the wire format of messages and configurations.
 *
 * State kept here (Figure 2 of the paper plus the etcd-style extras):
 * - the log: entries (snap_index, last] in `ents` (owned copies), the last snapshot (index,
 *   term, configuration, data), `stable` = last index handed out for persisting, `commit`,
 *   `applied` = last index handed out for applying. Invariants:
 *   snap_index <= applied <= commit <= last and snap_index <= stable <= last.
 * - the configuration in force: the newest RAFT_ENTRY_CONF entry in the log, else the
 *   snapshot's (thesis §4.1: a server uses the latest configuration in its log, committed or
 *   not), joint or not (thesis §4.3). `conf_index` is the index of that entry (or of the
 *   snapshot). A leader is a voter of it, or its removal is not committed yet (thesis §4.2.2).
 * - per member progress (`prs`, one slot per member): match/next (§5.3), the flow-control state
 *   of etcd (PROBE: one append per heartbeat until a match is found; REPLICATE: pipelined
 *   appends bounded by the in-flight window; SNAPSHOT: a snapshot transfer is out, its chunks
 *   bounded by their own window), whether it was heard from in the last election timeout
 *   (CheckQuorum) and its vote.
 * - follower: the snapshot transfer being received (`rx`): which transfer, the bytes held in
 *   order, and those not yet handed out for saving (at most RAFT_CHUNK_RX_BYTES_MAX).
 * - pending ReadIndex requests, acknowledged per heartbeat round (`context`).
 * - the outbox: messages in the order created; each owns a copy of its entries or chunk bytes,
 *   so later log changes cannot alter a message already sent.
 *
 * Persistence ordering: messages leave only in a ready batch, after the caller persisted the
 * batch's hard state and entries, so a vote or an ack is never sent before it is durable
 * (§5.1). The leader counts its own log for commitment only up to `stable` (thesis §10.2.1
 * allows writing in parallel; we keep the simpler rule); a candidate counts its own vote only
 * once it is persisted (election_vote_persisted), so a single voter leads only then.
 *
 * No loop here runs unbounded: loops walk the members (<= RAFT_NODES_MAX), the in-memory log
 * (<= RAFT_LOG_ENTRIES_MAX), the entries of a message (<= RAFT_MSG_ENTRIES_MAX), the pending
 * reads (<= RAFT_READS_MAX) or the outbox (<= RAFT_OUTBOX_MAX). */
#ifndef CS_RAFT_INT_H
#define CS_RAFT_INT_H

#include "raft.h"

enum pr_state { PR_PROBE = 0, PR_REPLICATE, PR_SNAPSHOT };      /* see progress.c */
enum vote_state { VOTE_NONE = 0, VOTE_GRANTED, VOTE_REJECTED }; /* a member's answer */
enum poll_result { POLL_PENDING = 0, POLL_WON, POLL_LOST };     /* an election's count */

struct raft_inflight {
    uint64_t index; /* last entry index of the append */
    uint64_t bytes; /* entry bytes of the append */
};

/* What the leader knows of one member (thesis §3.5, etcd Progress). */
struct raft_progress {
    uint64_t id;               /* member id; 0 = slot unused */
    bool learner;              /* non-voting */
    uint8_t state;             /* enum pr_state */
    uint8_t vote;              /* enum vote_state, during an election */
    bool probe_sent;           /* PROBE: an append is out, wait for a reply or a heartbeat */
    bool recent_active;        /* heard from since the last CheckQuorum round */
    uint64_t match;            /* highest index known replicated (matchIndex, §5.3) */
    uint64_t next;             /* next index to send (nextIndex, §5.3) */
    uint64_t pending_snapshot; /* SNAPSHOT: index of the snapshot sent */
    unsigned snapshot_ticks;   /* SNAPSHOT: ticks since the window last moved; resend after
                                  cfg.snapshot_resend_ticks, abandon after an election timeout */
    struct raft_snapshot snap; /* SNAPSHOT: the snapshot of the transfer (meta data) */
    uint64_t snap_transfer;    /* SNAPSHOT: id of the transfer */
    uint64_t snap_next;        /* SNAPSHOT: next chunk to send (chunk number) */
    uint64_t snap_acked;       /* SNAPSHOT: chunks the follower holds in order */
    uint64_t snap_rewound;     /* SNAPSHOT: 1 + the level of snap_acked the last fast
                                  retransmit went back to (0: none) */
    unsigned infl_start;       /* ring of appends in flight (REPLICATE) */
    unsigned infl_n;
    uint64_t infl_bytes;
    struct raft_inflight infl[RAFT_INFLIGHT_MAX];
};

/* The snapshot transfer a follower is receiving (thesis §5.3, raft.h "Snapshots"). */
struct raft_rx {
    bool active;               /* a transfer is in progress */
    uint64_t from;             /* its leader */
    uint64_t term;             /* the leader's term */
    uint64_t transfer;         /* the leader's transfer id */
    struct raft_snapshot snap; /* the snapshot received */
    uint64_t next;             /* bytes held in order: the next offset expected */
    uint8_t *buf;              /* received bytes not yet handed out for saving */
    uint64_t buf_offset;       /* image offset of buf[0] */
    uint32_t buf_len;          /* bytes in buf, <= RAFT_CHUNK_RX_BYTES_MAX */
    bool buf_start;            /* buf starts the transfer (offset 0: the storage discards its
                                  partial snapshot first) */
    struct raft_chunk out;     /* the chunk handed out in the ready being handled */
};

struct raft_read_pending {
    uint64_t request_id; /* caller's id */
    uint64_t index;      /* commit index when the read arrived */
    uint64_t seq;        /* heartbeat round that confirms it */
    uint32_t acks;       /* member slots that acknowledged a round >= seq */
    uint64_t origin;     /* node that asked (this one, or a follower, thesis §6.4.1) */
    bool await_commit;   /* arrived before the leader committed an entry of its term: index
                            and seq are set when it does (thesis §6.4 step 1) */
};

struct raft {
    struct raft_config cfg; /* copy of the caller's configuration */
    uint64_t id;            /* this node */
    /* persistent state (§5.1 Figure 2) */
    uint64_t term;                       /* currentTerm */
    uint64_t vote;                       /* votedFor in term, 0 for none */
    struct raft_hard_state persisted_hs; /* last hard state handed out for persisting */
    /* the log */
    struct raft_entry *ents;   /* entries snap.index+1 .. last, owned data */
    size_t ents_n;             /* entries in ents */
    size_t ents_cap;           /* slots in ents */
    struct raft_snapshot snap; /* last snapshot (index 0: none); its bytes are the caller's */
    bool snap_install;         /* snap came from the leader: the next ready installs it */
    struct raft_rx rx;         /* follower: the snapshot transfer being received */
    uint64_t transfers;        /* leader: snapshot transfers started (the last id) */
    uint64_t stable;           /* last index handed out for persisting */
    uint64_t commit;           /* commitIndex */
    uint64_t applied;          /* last index handed out for applying (lastApplied) */
    /* configuration */
    struct raft_conf conf;     /* in force: newest in the log, else the snapshot's */
    uint64_t conf_index;       /* index of the entry conf came from (snapshot index if none) */
    struct raft_progress *prs; /* RAFT_NODES_MAX slots, one per member of conf */
    /* volatile */
    uint8_t role;               /* enum raft_role */
    uint64_t lead;              /* leader of term as far as known, 0 if none */
    unsigned election_elapsed;  /* ticks since the last reset (leader: CheckQuorum period) */
    unsigned heartbeat_elapsed; /* leader: ticks since the last heartbeat round */
    unsigned timeout;           /* randomized election timeout, ticks */
    uint64_t transferee;        /* leader: target of a transfer in progress, 0 if none */
    unsigned transfer_elapsed;  /* leader: ticks since the transfer began */
    uint64_t uncommitted_bytes; /* leader: bytes proposed in this term and not yet committed */
    uint64_t msgs_refused;      /* messages dropped as malformed or as a sender's bug */
    /* ReadIndex */
    struct raft_read_pending reads[RAFT_READS_MAX];     /* ring: waiting for a quorum */
    unsigned reads_start;                               /* first of the ring */
    unsigned reads_n;                                   /* entries in the ring */
    uint64_t read_seq;                                  /* last heartbeat round started */
    struct raft_read_state ready_reads[RAFT_READS_MAX]; /* confirmed, for the next ready */
    unsigned ready_reads_n;                             /* entries in ready_reads */
    /* outbox */
    struct raft_msg *outbox; /* messages for the next ready */
    void **outbox_mem;       /* per message: the block owning its entries or snapshot data */
    size_t outbox_n;         /* messages in outbox */
    size_t outbox_cap;       /* grows by doubling up to RAFT_OUTBOX_MAX, never shrinks */
    bool in_ready;           /* between raft_ready and raft_advance */
    uint64_t ready_last;     /* last entry index of the ready being handled */
    uint64_t ready_applied;  /* last committed index of the ready being handled */
};

/* ---- configuration.c: membership (thesis §4.1, §4.2.2, §4.3) ---- */
/* Bit of this node's member slot, 0 when it has none (a leader outside its configuration). */
uint32_t conf_self_bit(struct raft *r);
/* An election's count over the member slots that granted and that rejected (bit per slot): a
 * majority of C_new and, while joint, of C_old (thesis §4.3). */
enum poll_result conf_poll(struct raft *r, uint32_t granted, uint32_t rejected);
bool conf_quorum_slots(struct raft *r, uint32_t slots); /* conf_poll(slots, 0) won */
/* The highest index stored on a majority of every half (matchIndex of the member slots). */
uint64_t conf_commit_index(struct raft *r);
/* C_old,new from cur (not joint) and target (not joint); false if it would be invalid. */
bool conf_enter(const struct raft_conf *cur, const struct raft_conf *target, struct raft_conf *out);
void conf_leave(const struct raft_conf *c, struct raft_conf *out); /* C_new of joint c */
/* Put configuration c (from the entry at index) in force and rebuild the member slots. */
void conf_set(struct raft *r, const struct raft_conf *c, uint64_t index);
/* The newest CONF entry in the log, else the snapshot's, in force. O(log length). */
void conf_recompute(struct raft *r);
/* Put the configuration of CONF entry e in force. CS_ECORRUPT if it does not decode. */
CS_MUST_CHECK int conf_apply_entry(struct raft *r, const struct raft_entry *e);
/* The configuration as of index (<= last): the newest CONF entry at or before it. */
struct raft_conf conf_at(const struct raft *r, uint64_t index);

/* ---- log.c: the in-memory log and the snapshot (§5.3, §7) ---- */
uint64_t log_term_or0(const struct raft *r, uint64_t index); /* 0 when compacted or beyond */
uint64_t log_last_term(const struct raft *r);
bool log_matches(const struct raft *r, uint64_t index, uint64_t term);
bool log_up_to_date(const struct raft *r, uint64_t index, uint64_t term); /* §5.4.1 */
/* The largest index <= index whose term is <= term (fast backtracking); its term in found_term. */
uint64_t log_find_conflict(const struct raft *r, uint64_t index, uint64_t term,
                           uint64_t *found_term);
void log_entry_free(struct raft_entry *e);
/* Append a copy of e (index last + 1). CS_EFULL over RAFT_LOG_ENTRIES_MAX, or -ENOMEM. */
CS_MUST_CHECK int log_push(struct raft *r, const struct raft_entry *e);
/* §5.3 receiver steps 3-4; *last_new gets the last index now known to match. */
CS_MUST_CHECK int log_append_follower(struct raft *r, const struct raft_entry *es, uint32_t n,
                                      uint64_t *last_new);
void log_commit_to(struct raft *r, uint64_t index); /* raise commit; index <= last (asserted) */
bool log_committed_in_term(const struct raft *r);   /* commit index is of the current term */
/* §7 InstallSnapshot receiver: whether the snapshot would replace the log. When the log holds
 * it (index and term) commit moves there instead. Refuses (and counts) a snapshot without us. */
bool log_snapshot_wanted(struct raft *r, const struct raft_snapshot *s);
/* §7 steps 5-7: replace the log by snapshot s (log_snapshot_wanted was true). */
void log_restore(struct raft *r, const struct raft_snapshot *s);
/* Load a restarted node's hard state, snapshot and log (§5.1). CS_ECORRUPT, -ENOMEM or the
 * storage's error. */
CS_MUST_CHECK int log_load(struct raft *r, const struct raft_storage *st);

/* ---- progress.c: the leader's view of each member, flow control (thesis §3.5) ---- */
struct raft_progress *progress_find(struct raft *r, uint64_t id); /* NULL: not a member */
unsigned progress_slot(const struct raft *r, const struct raft_progress *pr);
void progress_reset(struct raft *r, struct raft_progress *pr);
void progress_infl_add(struct raft *r, struct raft_progress *pr, uint64_t index, uint64_t bytes);
void progress_infl_free_to(struct raft_progress *pr, uint64_t index);
bool progress_infl_full(const struct raft *r, const struct raft_progress *pr);
void progress_become_probe(struct raft *r, struct raft_progress *pr);
void progress_become_replicate(struct raft_progress *pr);
bool progress_paused(const struct raft *r, const struct raft_progress *pr);
/* A rejection of the append after `rejected`; false for a stale one (etcd MaybeDecrTo). */
bool progress_decrease_to(struct raft_progress *pr, uint64_t rejected, uint64_t hint);
void progress_rebuild(struct raft *r, const struct raft_conf *c);

/* ---- election.c: roles and elections (§5.2, thesis §9.6, §3.10) ---- */
void election_reset_timeout(struct raft *r); /* draw a new randomized election timeout */
void election_become_follower(struct raft *r, uint64_t term, uint64_t lead);
/* Candidate only. False if the new term's empty entry could not be appended: then a follower. */
bool election_become_leader(struct raft *r);
bool election_promotable(const struct raft *r); /* a voter, so it may campaign */
enum poll_result election_poll(struct raft *r);
void election_campaign(struct raft *r, bool pre, bool transfer);
void election_tally(struct raft *r); /* (pre)candidate: act on the votes counted so far */
/* raft_advance: the hard state is persisted; a candidate's own vote counts from now on. */
void election_vote_persisted(struct raft *r);
void election_handle_vote(struct raft *r, const struct raft_msg *m); /* VOTE or PREVOTE */

/* ---- replication.c: AppendEntries, heartbeats, snapshots, commitment (§5.3, §7) ---- */
/* Returns whether a message was queued. */
bool replication_send_append(struct raft *r, struct raft_progress *pr, bool send_empty);
void replication_bcast_append(struct raft *r);
void replication_bcast_heartbeat(struct raft *r, uint64_t context);
bool replication_maybe_commit(struct raft *r); /* leader; true if commit advanced */
void replication_handle_append(struct raft *r, const struct raft_msg *m);
void replication_handle_heartbeat(struct raft *r, const struct raft_msg *m);
void replication_handle_snapshot(struct raft *r, const struct raft_msg *m);
/* Leader: a SNAP_RESP from pr (the window moves, or the transfer restarts). */
void replication_handle_snapshot_resp(struct raft *r, struct raft_progress *pr,
                                      const struct raft_msg *m);
/* Leader tick of a member in PR_SNAPSHOT: resend, or abandon the transfer. */
void replication_tick_snapshot(struct raft *r, struct raft_progress *pr);
/* Leader: abandon pr's transfer; pr probes again (a new transfer follows). */
void replication_abort_snapshot(struct raft *r, struct raft_progress *pr);
/* Follower: end the transfer being received (term or leader change); never installed. */
void replication_rx_abort(struct raft *r);
void replication_send_timeout_now(struct raft *r, uint64_t to);
void replication_handle_append_resp(struct raft *r, struct raft_progress *pr,
                                    const struct raft_msg *m);

/* ---- read.c: ReadIndex (thesis §6.4) ---- */
void read_drop(struct raft *r); /* forget the pending reads (a new term or role) */
void read_release(struct raft *r);
void read_ack(struct raft *r, unsigned slot, uint64_t context);
/* Leader only. Queued until the leader committed an entry of its term; CS_EFULL when full. */
CS_MUST_CHECK int read_start(struct raft *r, uint64_t request_id, uint64_t origin);
/* Leader, after its commit index moved: start the reads that waited for a commit in its term. */
void read_commit_in_term(struct raft *r);

/* ---- raft.c: the outbox ---- */
/* A zeroed message of this term queued for the next ready, or NULL (dropped like a lost one). */
struct raft_msg *outbox_msg_new(struct raft *r, uint8_t type, uint64_t to);
void outbox_send_simple(struct raft *r, uint8_t type, uint64_t to, uint64_t term, bool reject,
                        uint64_t index);
/* Drop the queued acknowledgements (APP_RESP, not rejects) of an index >= index: the log was
 * truncated there before the batch carrying them was persisted, so they would promise entries
 * that never reach the disk (§5.1). */
void outbox_drop_acks_from(struct raft *r, uint64_t index);
/* Drop the queued acknowledgements of snapshot transfer `transfer` (SNAP_RESP, not rejects):
 * the bytes they promise were dropped with the transfer before being saved. */
void outbox_drop_chunk_acks(struct raft *r, uint64_t transfer);

#endif
