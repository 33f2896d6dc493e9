/* raft-sim: a deterministic simulator of Raft clusters (raft/), driven by one seed per run.
 *
 *   raft-sim --seeds N [--first-seed S] [--nodes K] [--steps M] [--keep-going] [--verbose]
 *
 * Each seed builds a cluster of K nodes (1..SIM_NODES_MAX) in one process and runs it for M time
 * units (a node ticks every SIM_TICK_UNITS units) under a fault schedule drawn from the seed,
 * then heals every fault and checks liveness. The seed picks a scenario class:
 *   calm       light loss only
 *   lossy      heavy loss, duplication, reordering (long delays), bit flips in frames
 *   partition  symmetric splits, one-way cuts, process stalls (leaders on purpose: a stalled
 *              leader wakes up still believing it leads; its socket buffer drains late)
 *   crash      crashes that drop unpersisted state, restarts, slow disks, crashes right after a
 *              vote was granted or entries acknowledged
 *   churn      membership changes (learner, promote, remove), leadership transfers, compaction;
 *              a leader is sometimes isolated right after proposing a voter change and the next
 *              leader proposes another one as soon as the core lets it (thesis §4.1, the bug of
 *              a change before the leader's first commit in its term)
 *   chaos      all of the above
 *   leaderfall leaders crash soon after appending, one entry per append (§5.4.2, Figure 8)
 *   diskfault  failed writes, failed fsyncs (the page cache is lost at the crash that follows)
 *              and torn frames (power cut during a save); each stops its node (raft.h)
 *   replay     frames from thousands of ticks back delivered again (a long run)
 *   snapcrash  constant compaction, snapshots sent to lagging followers, crashes right after a
 *              compaction (sometimes before the store compacted) or a snapshot install, and in
 *              the middle of transfers
 *   long       SIM_LONG_FACTOR times the steps, leaders falling now and then: tens of elections
 *   drift      clock rates that change during the run (2.5x slower to 2x faster than nominal)
 *   confchase  every new leader asks for a membership change before its first commit in its
 *              term, and accepted changes often lose their leader at once (thesis §4.1)
 *   joint      changes of several voters at once (thesis §4.3): replace two, grow, shrink, swap
 *              all, voters turned learners, the leader removed (thesis §4.2.2); while a change is
 *              uncommitted its leader is often cut off from some of the others for a while
 *              (churn, chaos and confchase make some of their changes this way too)
 * and toggles PreVote / CheckQuorum and draws the flow-control limits. Snapshot images are the
 * state machine (24 bytes) plus padding made from it, 124 to 1023 bytes, sent in chunks of 32 to
 * 256 bytes (drawn per seed, with the chunks in flight): a transfer takes up to 32 messages. On top
 * of its class, a seed's mix (drawn from the seed) may add the confchase probe and drifting
 * clocks; every seed gets a few leadership transfers (each with a client's write right behind
 * it), frames delivered again some tens of ticks later (and, at a new leader, frames of earlier
 * terms addressed to it), light disk faults (a few failed, unsynced or torn saves per run),
 * membership changes, most of several voters (a second change often tried right behind an
 * accepted one; the leader often cut off, right after, from the voters the change drops), nodes
 * cut off for several election timeouts so that they come back behind the leader's snapshot, and
 * snapshot transfers broken mid-way (the transport reports it) while the leader compacts, so
 * that chunks of two transfers meet at the follower. Every new leader also gets, at once, the
 * last acknowledgement each node sent it in an earlier term (its frames to one of them lost for
 * a few ticks). And every seed runs probes (struct probe): short scripted schedules that build
 * the situations of the classic bugs (Figure 8's old-term entries at a new leader, a joint change
 * whose C_new majority is not C_old's, a leader removing itself, a snapshot transfer broken
 * half-way while the leader compacts) in a quiet moment of the run; until the first round of
 * probes is over, partitions, one-way cuts and lagging nodes do not begin (but in the partition
 * and chaos classes). Mostly, a membership change grows the
 * voters while they are a minority of the members. The uncommitted-bytes cap is
 * drawn per seed (nine seeds in ten 1 to 3 KiB: a leader that leaks its count stalls within a run).
 * The same seed always gets the same mix. Clients (closed-loop: at most
 * SIM_WRITES_INFLIGHT uncommitted writes per leader) propose writes and ReadIndex reads at any node
 * that believes it leads (a deposed leader may not know yet), and reads at followers too
 * (forwarded, thesis §6.4.1).
 *
 * Every node runs its own clock (8 to 12 units per tick; the drift class changes rates during
 * the run). Every message travels as an encoded
 * frame (raft_msg_encode/decode), so the codec is in the loop. Clients act before or after a
 * unit's deliveries, so a request can reach a deposed leader before the news does. A node hands a
 * ready batch to its "disk" (sim_store.c) only some time units after it appears (slow disks); a
 * crash loses everything not yet handed over, and what sat in the page cache after a failed
 * fsync. Promises (votes, acks) are checked against what survives a crash.
 *
 * Checks, after every time unit (each on what changed in it):
 *   - election safety: at most one leader per term (§5.2);
 *   - log matching (§5.3): an (index, term) pair names one entry and one predecessor term, over
 *     every entry any node ever handed to its disk (failed and torn saves too);
 *   - leader completeness (§5.4): a new leader of term T holds every entry committed by a leader
 *     of a term below T (commits are observed when a leader's commit index moves);
 *   - state machine safety (§5.4.3): nodes apply the same entry at each index, and a snapshot
 *     installed at an index carries the state every node had there; only committed entries are
 *     applied, so committed entries survive crashes;
 *   - linearizable reads (thesis §6.4): a read served at index i started after writes whose
 *     highest index was w requires i >= w;
 *   - the commit rule (§5.4.2) directly: within one leadership (node, term), the leader's commit
 *     index only moves onto an entry of its own term;
 *   - promises against the disk (§5.1), as each message leaves: a granted vote is on disk (same
 *     term and vote, or a later term) and an acknowledged index is not past the disk's last;
 *   - overlapping quorums (thesis §4.1, §4.3): a configuration entry is active from when it
 *     first appears in a log until a later configuration entry commits, another entry commits at
 *     its index or, while it is uncommitted, an entry of a later term commits; any two active at
 *     once must have intersecting quorums (a quorum of a joint configuration is a majority of
 *     C_old and of C_new: every quorum of one must meet every quorum of the other);
 *   - decisions (§5.2, §5.3, thesis §4.3): when a leader's commit index moves (also in the input
 *     that made a removed leader step down, thesis §4.2.2), the entry is on the disks of a quorum
 *     of its configuration, and every C_old,new entry it passes on majorities of both halves of
 *     that entry; a new leader was granted votes (as they left the voters, plus its own) by a
 *     quorum of its configuration; a node counts only in the halves that list it;
 *   - API contracts: no proposal or change accepted during a leadership transfer (mirrored from
 *     the client's calls and the leader's ticks); a follower's commit never moves past
 *     min(leaderCommit, last new entry) of the append it processed, nor past a heartbeat's
 *     commit; a heartbeat never carries a commit beyond what its recipient acknowledged in the
 *     term; a ReadIndex read leaves the leader only once a majority acknowledged a heartbeat
 *     whose round (context) is above every round sent before the read arrived (thesis §6.4);
 *   - atomic batches (raft.h, struct raft_storage): a ready batch reaches the store in one save
 *     holding its entries and hard state, and a restart finds exactly the image of the last
 *     save that returned 0 (no part of a torn or unsynced batch);
 *   - snapshot bytes (raft.h "Snapshots"): the image a node's store installed from the chunks its
 *     core wrote is, byte for byte, the image compacted at that index (a partial transfer, or
 *     chunks of two transfers mixed, never installs);
 *   - I/O errors stop the node: raft_ready_persist never reports success for a save the store
 *     failed (the node would act on state that is not on disk);
 *   - the §4.1 rule as an API contract: no membership change accepted before the leader
 *     committed an entry of its term, while joint, or while another change is uncommitted; and
 *     on the leader's log: never two configuration entries of its term above its commit index
 *     (C_new of a joint change only after C_old,new committed, thesis §4.3);
 *   - liveness: after the heal (every node up, no loss, no cut, clocks back to their first
 *     rates), a leader appears, a fresh proposal commits and every member of the configuration
 *     applies it within SIM_LIVENESS_TICKS ticks.
 * Each failed seed is attributed to the check that caught it (and to its scenario class) in the
 * closing report; an assertion inside the core is one more class ("abort") under --keep-going,
 * which counts such a seed as failed and goes on (tests/sim/mutants.sh uses it).
 * A time unit is one "step" of --steps; the default, SIM_STEPS_DEFAULT (400 ticks, room for the
 * probes and for the random faults after them), keeps 2000 seeds at about ten seconds (the long
 * and replay classes run SIM_LONG_FACTOR times as many). The closing report is
 * a table per fault class (runs, passed, failed, per-run figures), the failed seeds per check and
 * class, and last "N passed, M failed".
 * A violation fails the seed; the first failing seed is printed with the last trace lines.
 * The same seed always replays the same run: all randomness (including the election timeouts the
 * core asks for) comes from the seed's PRNG, and nothing reads a clock. */
#include "sim.h"

#include <cstore.h>

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define SIM_NODES_MAX 9u
#define SIM_TICK_UNITS 10u /* time units per tick */
#define SIM_ELECTION_TICKS 10u
#define SIM_HEARTBEAT_TICKS 2u
#define SIM_LIVENESS_TICKS 200u /* bound on recovery after the heal */
#define SIM_NET_MAX 20000u      /* frames in flight; more are dropped */
#define SIM_WRITES_INFLIGHT 32u /* uncommitted entries at a leader before clients wait */
#define SIM_READS_MAX 64u       /* client reads outstanding per node */
#define SIM_READ_UNITS (30u * SIM_TICK_UNITS) /* a read without an answer is abandoned */
#define SIM_READY_BURST 8u /* extra ready batches per unit while committed entries wait */
#define SIM_TRACE_LINES 48u
#define SIM_TRACE_LINE_BYTES 160u
#define SIM_STEPS_DEFAULT 4000u
#define SIM_LONG_FACTOR 8u   /* the long and replay classes run this many times --steps */
#define SIM_ARCHIVE_MAX 256u /* frames kept for the replay class */
#define SIM_REPLAY_AGE_MIN (300u * SIM_TICK_UNITS) /* a replayed frame is at least this old */

enum sim_class {
    CL_CALM = 0,
    CL_LOSSY,
    CL_PARTITION,
    CL_CRASH,
    CL_CHURN,
    CL_CHAOS,
    CL_LEADERFALL,
    CL_DISKFAULT,
    CL_REPLAY,
    CL_SNAPCRASH,
    CL_LONG,
    CL_DRIFT,
    CL_CONFCHASE,
    CL_JOINT,
    SIM_CLASSES
};

static const char *const class_names[SIM_CLASSES] = {
    "calm",      "lossy",  "partition", "crash", "churn", "chaos",     "leaderfall",
    "diskfault", "replay", "snapcrash", "long",  "drift", "confchase", "joint"};

/* What a failed seed violated: each check below (file comment) has its own class, so the report
 * says which check caught what. */
enum check {
    CK_ELECTION = 0,    /* one leader per term, terms never go back (§5.2) */
    CK_LOG_MATCHING,    /* §5.3 */
    CK_COMPLETENESS,    /* leader completeness (§5.4) */
    CK_SM_SAFETY,       /* state machine safety (§5.4.3), snapshots */
    CK_STALE_READ,      /* a read missed an acknowledged write (thesis §6.4) */
    CK_LIVENESS,        /* no progress after the heal */
    CK_COMMIT_RULE,     /* a leader's commit moved onto an entry of an older term (§5.4.2) */
    CK_DISK_PROMISE,    /* a vote or an ack left before its state was on disk (§5.1) */
    CK_QUORUM_OVERLAP,  /* two configurations active at once with disjoint quorums (thesis §4.1) */
    CK_TRANSFER,        /* a proposal accepted during a leadership transfer (thesis §3.10) */
    CK_FOLLOWER_COMMIT, /* a follower committed past what the append or heartbeat allowed */
    CK_HEARTBEAT_COMMIT, /* a heartbeat's commit exceeds what the follower acknowledged */
    CK_READ_ROUND,       /* a read released without a quorum round started after it (§6.4) */
    CK_ATOMIC,           /* a batch not saved as one unit, or a restart finding part of one */
    CK_IO_STOP,          /* a node went on after its storage failed a save */
    CK_CONF_RULE,        /* a change accepted before the leader committed in its term (§4.1) */
    CK_SNAP_BYTES,       /* an installed snapshot's bytes differ from the leader's image */
    CK_API,              /* an unexpected error from the core's interface */
    CK_DECISION,         /* a commit or an election without a quorum of the configuration */
    CK_ABORT,            /* an assertion of the core failed (the seed aborted) */
    CK_N
};

static const char *const check_names[CK_N] = {
    "election",        "log-matching",     "completeness", "sm-safety",      "stale-read",
    "liveness",        "commit-rule",      "disk-promise", "quorum-overlap", "transfer",
    "follower-commit", "heartbeat-commit", "read-round",   "atomic-batch",   "io-stop",
    "conf-rule",       "snap-bytes",       "api",          "decision",       "abort"};

struct rng {
    uint64_t s;
};

static uint64_t rng_next(struct rng *g)
{
    uint64_t z = (g->s += 0x9e3779b97f4a7c15ull); /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rng_below(struct rng *g, uint64_t n)
{
    return n ? rng_next(g) % n : 0;
}

/* true with probability p_ppm / 1e6 */
static bool rng_ppm(struct rng *g, uint32_t p_ppm)
{
    return rng_below(g, 1000000) < p_ppm;
}

static uint64_t rng_cb(void *ctx)
{
    return rng_next(ctx);
}

struct net_msg {
    uint64_t at;  /* delivery time */
    uint64_t seq; /* random tie-break: same-time frames arrive in random order */
    unsigned to;  /* node index */
    unsigned from;
    uint32_t len;
    uint8_t *buf;
};

struct read_wait {
    uint64_t request_id;
    uint64_t acked_max; /* highest index of an acknowledged write when the read began */
    uint64_t index;     /* read index, once known */
    uint64_t start;     /* time the read began; the client gives up after SIM_READ_UNITS */
};

/* The highest value seen within one term (an acknowledged index, a heartbeat round). */
struct term_max {
    uint64_t term;
    uint64_t max;
};

#define SIM_READ_CONFS 4u /* configurations remembered per read; more: the read is not checked */
/* Reads a leader took and has not answered yet: the core holds at most RAFT_READS_MAX pending
 * (duplicates of one request id share a slot here), plus answers not sent yet. A slot is reused
 * only once answered or once its term is over (the core dropped its reads then), never while the
 * core may still answer it: a later read's check would otherwise get an earlier one's answer. */
#define SIM_LEAD_READS_MAX (2u * RAFT_READS_MAX)

/* The voters of a configuration as bit masks (bit i: node id i): C_new's, and while joint
 * (thesis §4.3) C_old's (0: not joint). A quorum is a majority of each. */
struct vset {
    uint32_t voters;
    uint32_t old;
};

/* A read a leader took (its own or forwarded): what the read-round check needs. */
struct lead_read {
    uint64_t request_id;                /* 0: slot free */
    uint64_t term;                      /* the leader's term when it took the read */
    uint64_t floor;                     /* a round started after the read has a context >= this */
    struct vset voters[SIM_READ_CONFS]; /* configurations the leader had while it was pending */
    unsigned voters_n;                  /* SIM_READ_CONFS + 1: too many, not checked */
    unsigned again;                     /* the same request taken again while pending (a
                                           duplicated or replayed frame): answers still due */
};

/* A configuration entry seen in some log (index 0: the bootstrap one). It is active from when it
 * first appears until a configuration entry after it commits, another entry commits at its index,
 * or (while it is uncommitted) an entry of a later term commits: then no leader can come from it
 * any more (§5.4: every future leader holds that entry, and a log holding it cannot hold this
 * one). */
struct conf_rec {
    uint64_t index;
    uint64_t term;
    struct vset voters;
    bool retired;
};

/* The granted votes of one term, as they left the voters: per candidate (node index), bit i for
 * node id i. */
struct term_votes {
    uint32_t granted[SIM_NODES_MAX];
};

struct sim;

#define SIM_IMAGES 4u /* snapshot images a node can still send (its latest ones) */

/* A snapshot image a node holds: its 24-byte head (SM_SNAP_BYTES) and the padding made from it. */
struct sim_img {
    uint64_t index; /* 0: slot free */
    uint8_t head[24];
};

struct node {
    uint64_t id;
    struct sim *sim;
    struct sim_img imgs[SIM_IMAGES]; /* images it can read chunks from (lost at a crash) */
    unsigned imgs_next;              /* ring slot of the next image */
    struct raft *r;                  /* NULL while crashed */
    struct sim_store disk;
    unsigned phase;           /* tick offset */
    unsigned tick_units;      /* this node's clock: units per tick, around SIM_TICK_UNITS */
    unsigned tick_units_base; /* its rate at the start (restored at the heal) */
    uint64_t paused_until;    /* a stalled process (GC, swap): nothing runs before this time */
    unsigned disk_delay;      /* units a ready waits before it is persisted */
    unsigned disk_wait;       /* units waited so far */
    uint8_t role_seen;
    uint64_t term_seen;
    uint64_t down_until; /* crashed: restart time */
    /* state machine */
    uint64_t sm_index;
    uint64_t sm_hash;
    uint64_t sm_writes;
    /* client reads */
    struct read_wait reads[SIM_READS_MAX];
    unsigned reads_n;
    /* commit rule: the leadership (term) last seen on this node and its commit index there */
    uint64_t lead_term;
    uint64_t lead_commit;
    /* the leadership transfer the client asked for (raft.h: proposals refused until it completes
     * or an election timeout of leader ticks passed) */
    uint64_t xfer_term; /* 0: none */
    uint64_t xfer_target;
    unsigned xfer_ticks;
    /* ReadIndex rounds, this incarnation */
    uint64_t hb_sent_max;                  /* highest heartbeat context sent */
    struct term_max hb_ack[SIM_NODES_MAX]; /* per member: highest context acknowledged to us */
    struct vset voters_seen;               /* voters while leading, as last seen */
    struct lead_read lreads[SIM_LEAD_READS_MAX]; /* reads taken as leader, not yet answered */
};

/* What the checker knows of one log index. */
struct rec {
    uint64_t term;        /* term of the entry committed/applied there (0: unknown) */
    uint64_t ehash;       /* hash of that entry */
    uint64_t sm_hash;     /* state machine hash after applying it */
    uint64_t commit_term; /* term of the first leader seen committing it (0: not yet) */
    uint64_t snap_hash;   /* hash of the snapshot image a node compacted at this index */
};

/* Log matching table: (index, term) -> (previous term, entry hash). Open addressing. */
struct lm_slot {
    uint64_t index;
    uint64_t term;
    uint64_t prev_term;
    uint64_t ehash;
};

struct faults {
    uint32_t loss_ppm;
    uint32_t dup_ppm;
    uint32_t long_delay_ppm;
    uint32_t flip_ppm;
    uint32_t partition_ppm;
    uint32_t oneway_ppm;
    uint32_t pause_ppm;           /* per node and time unit: the process stalls */
    uint32_t leader_pause_ppm;    /* extra, for a node that leads (a stale leader wakes up) */
    uint32_t crash_ppm;           /* per node and time unit */
    uint32_t leader_crash_ppm;    /* extra, for a node that leads */
    uint32_t crash_after_ack_ppm; /* per ready that granted a vote or acknowledged entries */
    uint32_t conf_ppm;
    uint32_t depose_conf_ppm; /* per accepted change: isolate its leader at once (thesis §4.1) */
    uint32_t transfer_ppm;
    uint32_t compact_ppm;
    uint32_t disk_eio_ppm;         /* per save: the write fails, nothing lands */
    uint32_t disk_fsync_ppm;       /* per save: the write lands in the cache, its fsync fails */
    uint32_t disk_torn_ppm;        /* per save: power cut during the write (torn frame) */
    uint32_t archive_ppm;          /* per frame sent: kept for a replay much later */
    uint32_t replay_ppm;           /* per time unit: an archived frame is delivered again */
    uint32_t drift_ppm;            /* per node and time unit: its clock rate changes */
    uint32_t crash_after_snap_ppm; /* per compaction or snapshot install: crash at once */
    uint32_t fresh_conf_ppm;       /* per unit: a leader not yet committed in its term tries a
                                      change (the core must refuse, thesis §4.1) */
    uint32_t members_ppm;          /* per change proposed: of several voters at once (§4.3) */
    uint32_t change_cut_ppm;       /* per unit while a leader's change is uncommitted: cut it
                                      off from some of the others for a while */
    uint32_t change_behind_ppm;    /* per accepted change: another one right behind it (the
                                      core must refuse it, thesis §4.1, §4.3) */
    uint32_t change_cut_now_ppm;   /* per accepted change: change_cut_ppm's cut at once */
    uint32_t snap_reset_ppm;       /* per snapshot chunk past the first sent: the leader
                                      compacts and the transport reports the transfer broken */
    uint32_t lag_ppm;              /* per unit: a node is cut off for several election timeouts
                                      and comes back behind the leader's snapshot */
    unsigned disk_delay_max;
    unsigned down_ticks_max; /* a crashed node stays down up to this */
    unsigned delay_max;
};

struct stats {
    uint64_t commits;
    uint64_t elections;
    uint64_t reads;
    uint64_t snapshots;
    uint64_t confs;
    uint64_t transfers;
    uint64_t deposed; /* leaders isolated right after a membership change */
    uint64_t crashes;
    uint64_t stalls;
    uint64_t corrupt;
    uint64_t disk_faults; /* saves failed or torn */
    uint64_t replays;     /* archived frames delivered again */
    uint64_t drifts;      /* clock rate changes */
    uint64_t chunks;      /* snapshot chunks sent */
    uint64_t joints;      /* changes accepted that entered a joint configuration */
    uint64_t probes;      /* probes run (see struct probe) */
    uint64_t stale_acks;  /* acknowledgements of earlier terms delivered to new leaders */
};

#define SIM_ACK_FRAME_MAX 128u /* an encoded AppendEntries answer (no entries) fits */

/* The last acknowledgement (AppendEntries answer, index > 0) one node sent another, as encoded:
 * delivered again to that node when it next becomes leader (stale_acks_to_new_leader). */
struct sent_ack {
    uint64_t term; /* 0: none yet */
    uint32_t len;
    uint8_t buf[SIM_ACK_FRAME_MAX];
};

/* Probes: short scripted schedules that build, in every seed, the situations the classic bugs
 * need and random faults reach only now and then. One runs at a time, in a quiet moment (no
 * other cut in force), and owns the network cuts and s->heal_at until its end; crashes and
 * losses of the seed's class go on meanwhile; clients make no membership changes, transfers or
 * compactions during one. Each seed runs them by turns, in the order of enum probe_kind (the
 * joint one last: it leaves a single voter), a few ticks apart from 10 to 25 ticks on; a kind
 * whose moment does not come within 10 ticks (of a settled leader and no other cut) gives way
 * to the next. Until the first round is over, partitions, one-way cuts and lagging nodes do not
 * begin (but in the partition and chaos classes). The kinds:
 *   snap   (§7, raft.h "Snapshots") a member is cut off while the leader goes on and compacts,
 *          comes back behind the snapshot, and the stream of its transfer breaks after the first
 *          chunk (what was queued behind it is lost); the leader hears of it once that chunk
 *          arrived, and compacts again: the member holds part of one snapshot when the chunks
 *          of another, of the same term, arrive;
 *   removal (thesis §4.2.2) the leader removes itself from the voters (it stays a learner) and
 *          is cut off from enough of the remaining voters that they are a majority of C_new
 *          only with the leader counted: a leader that counted itself would commit;
 *   fig8   (§5.4.2, Figure 8) every node is cut off from the others, the leader writes entries
 *          only it holds and crashes; it comes back reaching a bare majority only, and wins a
 *          new term (the longest log) holding entries of its old term above its commit that
 *          the others lack: it catches them up in several appends when messages are small;
 *   joint  (thesis §4.3) a leader shrinks the voters to itself plus the learners, through
 *          C_old,new, and is cut off from the voters it drops: a majority of C_new alone is
 *          then at hand, a majority of C_old is not. */
enum probe_kind { PROBE_SNAP = 0, PROBE_REMOVAL, PROBE_FIG8, PROBE_JOINT, PROBE_KINDS };

struct probe {
    bool active;
    unsigned kind;
    unsigned stage;
    uint64_t until;      /* end of the current stage (time units) */
    unsigned l, a;       /* node indexes: the leader, and the other node the probe works on */
    uint64_t term;       /* the leader's term when the probe began */
    unsigned breaks;     /* snap: transfers to the member broken so far */
    uint64_t snap_index; /* snap: the leader's snapshot the next transfer should carry */
    uint64_t xfer;       /* snap: the broken transfer (its chunks after the break are lost) */
    uint32_t set;        /* fig8: the voters the leader reaches after its crash (bits by id) */
};

struct sim {
    struct rng rng;
    uint64_t seed;
    unsigned n;
    unsigned cls;
    bool pre_vote;
    bool check_quorum;
    unsigned inflight_msgs_max; /* flow control, drawn per seed */
    uint64_t inflight_bytes_max;
    uint64_t msg_bytes_max;
    uint64_t committed_bytes_max;   /* per ready batch (0: no limit), drawn per seed */
    uint64_t uncommitted_bytes_max; /* drawn per seed: small, a leader's leak stalls it in a run */
    uint32_t chunk_bytes;           /* snapshot chunk size, drawn per seed (small: many chunks) */
    unsigned chunk_window;          /* snapshot chunks in flight per follower, drawn per seed */
    uint64_t img_bytes;             /* size of every snapshot image: head + padding */
    struct faults f;
    struct node nodes[SIM_NODES_MAX];
    bool cut[SIM_NODES_MAX][SIM_NODES_MAX]; /* cut[a][b]: frames a -> b are lost */
    uint64_t heal_at;
    uint64_t now;
    /* deposed-change scenario: a leader isolated right after proposing a change; the next
     * leader (term above chase_term) proposes the opposite kind of change as soon as it can */
    uint64_t chase_term;    /* 0: no chase in progress */
    uint64_t chase_deposed; /* the isolated leader */
    int chase_type;         /* enum raft_conf_change the next leader proposes */
    /* replay class: frames kept from the past, delivered again much later */
    struct net_msg archive[SIM_ARCHIVE_MAX];
    uint64_t replay_age; /* units: a replayed frame is at least this old */
    /* network: binary heap on (at, seq) */
    struct net_msg *net;
    size_t net_n;
    size_t net_cap;
    /* checker */
    uint64_t *leader_of_term;
    size_t terms_cap;
    struct rec *recs;
    size_t recs_cap;
    uint64_t committed_max;
    uint64_t committed_term_max; /* highest term of a committed entry */
    uint64_t acked_max;          /* highest index of an applied (acknowledged) write */
    struct lm_slot *lm;
    size_t lm_cap;
    size_t lm_n;
    uint64_t next_write;
    uint64_t next_read;
    struct term_max app_ack[SIM_NODES_MAX][SIM_NODES_MAX]; /* [from][to]: highest index acked */
    struct conf_rec *confs;
    size_t confs_n;
    size_t confs_cap;
    struct term_votes *votes; /* by term */
    size_t votes_cap;
    enum check failed_check;
    bool failed;
    bool report; /* print the failure and its trace (the first failing seed) */
    char failure[256];
    struct stats st;
    /* probes (struct probe) */
    struct probe probe;
    uint64_t probe_at;          /* earliest start of the next probe */
    uint64_t writes_held_until; /* clients hold their writes (a learner to promote catches up) */
    unsigned probe_turn;        /* next kind: probe_turn % PROBE_KINDS */
    struct sent_ack last_ack[SIM_NODES_MAX][SIM_NODES_MAX]; /* [from][to] */
    uint64_t cut_until[SIM_NODES_MAX][SIM_NODES_MAX]; /* one-way cuts of their own (stale acks) */
    /* trace ring */
    char trace[SIM_TRACE_LINES][SIM_TRACE_LINE_BYTES];
    unsigned trace_n;
    bool verbose;
};

/* The seed being run and its simulator, for the abort handler only (a failed cs_assert inside
 * the core is a failure to report with its seed). With --keep-going the handler jumps back to
 * the seed loop, which counts the seed as failed (its simulator is leaked) and goes on. */
static struct sim *volatile current_sim;
static sigjmp_buf abort_jmp;
static volatile sig_atomic_t abort_armed;

static void trace(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void trace(struct sim *s, const char *fmt, ...)
{
    char *line = s->trace[s->trace_n % SIM_TRACE_LINES];
    int off = snprintf(line, SIM_TRACE_LINE_BYTES, "t=%" PRIu64 " ", s->now);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + off, SIM_TRACE_LINE_BYTES - (size_t)off, fmt, ap);
    va_end(ap);
    s->trace_n++;
    if (s->verbose)
        printf("  %s\n", line);
}

static void fail(struct sim *s, enum check ck, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct sim *s, enum check ck, const char *fmt, ...)
{
    if (s->failed)
        return;
    s->failed = true;
    s->failed_check = ck;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->failure, sizeof(s->failure), fmt, ap);
    va_end(ap);
    trace(s, "VIOLATION: %s", s->failure);
}

static void print_trace(const struct sim *s, FILE *out)
{
    unsigned n = s->trace_n < SIM_TRACE_LINES ? s->trace_n : SIM_TRACE_LINES;
    for (unsigned k = s->trace_n - n; k < s->trace_n; k++)
        fprintf(out, "    %s\n", s->trace[k % SIM_TRACE_LINES]);
}

static void on_abort(int sig)
{
    (void)sig;
    struct sim *s = current_sim;
    if (s && s->report) {
        fprintf(stderr, "raft-sim: seed %" PRIu64 " (%s, %u nodes) aborted; trace:\n", s->seed,
                class_names[s->cls], s->n);
        print_trace(s, stderr);
    }
    if (abort_armed)
        siglongjmp(abort_jmp, 1);
    signal(SIGABRT, SIG_DFL);
    raise(SIGABRT);
}

/* ------------------------------------------------------------------------------------------ */
/* Growable tables                                                                             */

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need < *cap)
        return p;
    size_t c = *cap ? *cap : 1024;
    while (c <= need)
        c *= 2;
    uint8_t *q = realloc(p, c * elem);
    if (!q) {
        fprintf(stderr, "raft-sim: out of memory\n");
        exit(2);
    }
    memset(q + *cap * elem, 0, (c - *cap) * elem);
    *cap = c;
    return q;
}

static struct rec *rec_at(struct sim *s, uint64_t index)
{
    s->recs = grow(s->recs, &s->recs_cap, (size_t)index, sizeof(*s->recs));
    return &s->recs[index];
}

static uint64_t entry_hash(const struct raft_entry *e)
{
    uint64_t h = XXH3_64bits_withSeed(e->data ? (const void *)e->data : (const void *)"", e->len,
                                      e->term * 31 + e->type);
    return h ^ (e->index * 0x9e3779b97f4a7c15ull);
}

static uint64_t lm_hash(uint64_t index, uint64_t term)
{
    return (index * 0x9e3779b97f4a7c15ull) ^ (term * 0xc2b2ae3d27d4eb4full);
}

static void lm_insert_raw(struct lm_slot *t, size_t cap, const struct lm_slot *v)
{
    size_t i = lm_hash(v->index, v->term) & (cap - 1);
    for (size_t k = 0; k < cap; k++, i = (i + 1) & (cap - 1)) {
        if (t[i].index == 0) {
            t[i] = *v;
            return;
        }
    }
}

/* Look up (index, term); insert v if absent. Returns the slot holding the first record. */
static struct lm_slot *lm_get(struct sim *s, const struct lm_slot *v)
{
    if ((s->lm_n + 1) * 2 > s->lm_cap) {
        size_t cap = s->lm_cap ? s->lm_cap * 2 : 4096;
        struct lm_slot *t = calloc(cap, sizeof(*t));
        if (!t)
            exit(2);
        for (size_t i = 0; i < s->lm_cap; i++)
            if (s->lm[i].index)
                lm_insert_raw(t, cap, &s->lm[i]);
        free(s->lm);
        s->lm = t;
        s->lm_cap = cap;
    }
    size_t i = lm_hash(v->index, v->term) & (s->lm_cap - 1);
    for (size_t k = 0; k < s->lm_cap; k++, i = (i + 1) & (s->lm_cap - 1)) {
        if (s->lm[i].index == v->index && s->lm[i].term == v->term)
            return &s->lm[i];
        if (s->lm[i].index == 0) {
            s->lm[i] = *v;
            s->lm_n++;
            return &s->lm[i];
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Network                                                                                     */

static bool net_less(const struct net_msg *a, const struct net_msg *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void net_push(struct sim *s, struct net_msg m)
{
    if (s->net_n >= SIM_NET_MAX) {
        free(m.buf);
        return;
    }
    s->net = grow(s->net, &s->net_cap, s->net_n, sizeof(*s->net));
    size_t i = s->net_n++;
    s->net[i] = m;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!net_less(&s->net[i], &s->net[p]))
            break;
        struct net_msg t = s->net[p];
        s->net[p] = s->net[i];
        s->net[i] = t;
        i = p;
    }
}

static struct net_msg net_pop(struct sim *s)
{
    struct net_msg top = s->net[0];
    s->net[0] = s->net[--s->net_n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < s->net_n && net_less(&s->net[l], &s->net[m]))
            m = l;
        if (r < s->net_n && net_less(&s->net[r], &s->net[m]))
            m = r;
        if (m == i)
            break;
        struct net_msg t = s->net[m];
        s->net[m] = s->net[i];
        s->net[i] = t;
        i = m;
    }
    return top;
}

static uint64_t net_delay(struct sim *s)
{
    if (rng_ppm(&s->rng, s->f.long_delay_ppm))
        return 1 + rng_below(&s->rng, 20 * SIM_TICK_UNITS);
    return 1 + rng_below(&s->rng, s->f.delay_max);
}

/* Are frames from node index a to b lost now: a cut of a fault or a probe, or a one-way cut of
 * its own (stale_acks_to_new_leader)? */
static bool link_cut(const struct sim *s, unsigned a, unsigned b)
{
    return s->cut[a][b] || s->now < s->cut_until[a][b];
}

/* Put m on the wire. Returns false when a transport would see the send fail (the link is cut):
 * the caller reports a failed InstallSnapshot to the core. */
static bool send_frame(struct sim *s, unsigned from, const struct raft_msg *m)
{
    if (m->to == 0 || m->to > s->n)
        return false;
    unsigned to = (unsigned)(m->to - 1);
    size_t cap = raft_msg_encoded_bytes(m), len;
    uint8_t *buf = malloc(cap);
    if (!buf)
        exit(2);
    int rc = raft_msg_encode(m, buf, cap, &len);
    if (rc != 0) {
        fail(s, CK_API, "encode of %s failed: %d", raft_msg_type_name(m->type), rc);
        free(buf);
        return true;
    }
    if (m->type == RAFT_MSG_APP_RESP && !m->reject && m->index > 0 && len <= SIM_ACK_FRAME_MAX) {
        struct sent_ack *a = &s->last_ack[from][to]; /* kept even if lost: a long delay */
        a->term = m->term;
        a->len = (uint32_t)len;
        memcpy(a->buf, buf, len);
    }
    if (link_cut(s, from, to) || rng_ppm(&s->rng, s->f.loss_ppm)) {
        free(buf);
        return !link_cut(s, from, to);
    }
    if (rng_ppm(&s->rng, s->f.archive_ppm)) {
        /* kept for the replay class: delivered again thousands of ticks from now */
        struct net_msg *a = &s->archive[rng_below(&s->rng, SIM_ARCHIVE_MAX)];
        free(a->buf);
        *a = (struct net_msg){.at = s->now, .to = to, .from = from, .len = (uint32_t)len};
        a->buf = malloc(len);
        if (!a->buf)
            exit(2);
        memcpy(a->buf, buf, len);
    }
    unsigned copies = rng_ppm(&s->rng, s->f.dup_ppm) ? 2 : 1;
    for (unsigned c = 0; c < copies; c++) {
        struct net_msg nm = {.at = s->now + net_delay(s),
                             .seq = rng_next(&s->rng),
                             .to = to,
                             .from = from,
                             .len = (uint32_t)len};
        nm.buf = c == copies - 1 ? buf : malloc(len);
        if (!nm.buf)
            exit(2);
        if (nm.buf != buf)
            memcpy(nm.buf, buf, len);
        if (rng_ppm(&s->rng, s->f.flip_ppm)) {
            uint64_t bit = rng_below(&s->rng, (uint64_t)len * 8);
            nm.buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        net_push(s, nm);
    }
    return true;
}

/* The replay class: a frame sent at least SIM_REPLAY_AGE_MIN units ago (thousands of ticks in a
 * long run) arrives again, as a router or a retransmitting proxy could deliver it. A correct node
 * ignores it or answers it harmlessly (its term is old, Figure 2; §5.3's checks). */
/* Archived frame a delivered again (a copy), 1 to `within` units from now. */
/* A copy of frame buf (len bytes) from node index `from` to `to`, 1 to `within` units from now. */
static void push_copy(struct sim *s, unsigned from, unsigned to, const uint8_t *buf, uint32_t len,
                      uint64_t within)
{
    struct net_msg m = {.at = s->now + 1 + rng_below(&s->rng, within),
                        .seq = rng_next(&s->rng),
                        .to = to,
                        .from = from,
                        .len = len};
    m.buf = malloc(len);
    if (!m.buf)
        exit(2);
    memcpy(m.buf, buf, len);
    net_push(s, m);
}

static void replay_frame(struct sim *s, const struct net_msg *a, uint64_t within)
{
    push_copy(s, a->from, a->to, a->buf, a->len, within);
    s->st.replays++;
}

/* Is archived frame a addressed to a node that leads now, in a later term than the frame's? */
static bool replay_to_later_leader(const struct sim *s, const struct net_msg *a)
{
    const struct node *to = &s->nodes[a->to];
    if (!a->buf || !to->r || raft_role(to->r) != RAFT_LEADER)
        return false;
    struct raft_msg m;
    if (raft_msg_decode(a->buf, a->len, &m) != 0)
        return false;
    bool older = m.term < raft_term(to->r);
    raft_msg_release(&m);
    return older;
}

/* Frames of earlier terms still in the network when a node becomes leader (a router's queue, a
 * retransmitting proxy): mostly, up to two archived frames addressed to the new leader from
 * before its term arrive within a few units, acknowledgements (of an earlier leadership of its)
 * first. The leader must not count them (Figure 2: a stale term is answered, never acted on);
 * counted, they raise a member's match before it acknowledged anything in the term. */
static void replay_to_new_leader(struct sim *s, const struct node *nd)
{
    if (!s->f.replay_ppm)
        return;
    /* the archive's frames to nd of earlier terms, acknowledgements first */
    unsigned pick[SIM_ARCHIVE_MAX], n = 0, acks = 0;
    for (unsigned i = 0; i < SIM_ARCHIVE_MAX; i++) {
        const struct net_msg *a = &s->archive[i];
        if (&s->nodes[a->to] != nd || !replay_to_later_leader(s, a))
            continue;
        struct raft_msg m;
        bool ack = false;
        if (raft_msg_decode(a->buf, a->len, &m) == 0) {
            ack = m.type == RAFT_MSG_APP_RESP && !m.reject && m.index > 0;
            raft_msg_release(&m);
        }
        if (ack) {
            pick[n++] = pick[acks];
            pick[acks++] = i;
        } else {
            pick[n++] = i;
        }
    }
    for (unsigned k = 0; k < 3 && k < n; k++) {
        unsigned from = acks > k ? k : (unsigned)(k + rng_below(&s->rng, n - k));
        replay_frame(s, &s->archive[pick[from]], 3);
    }
}

/* A node that becomes leader gets, within a few units, the last acknowledgement each other node
 * sent it in an earlier term (of an earlier leadership of its: a duplicate delayed that long),
 * and its own frames to one of those nodes are lost for a few ticks, so that a heartbeat leaves
 * before that node acknowledges anything in the new term. Figure 2: a stale term is answered,
 * never acted on; a leader that counted the old acknowledgement would raise the node's match
 * index and tell it to commit what it never acknowledged in the term (the heartbeat-commit
 * check). Not after the heal (liveness runs without faults). */
static void stale_acks_to_new_leader(struct sim *s, const struct node *nd)
{
    if (!s->f.replay_ppm)
        return;
    unsigned l = (unsigned)(nd->id - 1), cut = s->n;
    uint64_t term = raft_term(nd->r);
    for (unsigned k = 0; k < s->n; k++) {
        const struct sent_ack *a = &s->last_ack[k][l];
        if (k == l || !a->term || a->term >= term)
            continue;
        push_copy(s, k, l, a->buf, a->len, 3);
        s->st.stale_acks++;
        if (cut == s->n || rng_ppm(&s->rng, 500000))
            cut = k;
    }
    if (cut < s->n) /* past the first heartbeat, well short of an election timeout */
        s->cut_until[l][cut] = s->now + SIM_TICK_UNITS * (3 + rng_below(&s->rng, 2));
}

static void replay_old_frame(struct sim *s)
{
    struct net_msg *a = &s->archive[rng_below(&s->rng, SIM_ARCHIVE_MAX)];
    /* mostly a frame of an earlier term to a node that leads now: an old answer (an ack of an
     * earlier leadership, say) reaching a later leader */
    for (unsigned k = 0; k < 16; k++) {
        if (replay_to_later_leader(s, a))
            break;
        a = &s->archive[rng_below(&s->rng, SIM_ARCHIVE_MAX)];
    }
    if (!a->buf || s->now < a->at + s->replay_age)
        return;
    replay_frame(s, a, SIM_TICK_UNITS);
}

/* ------------------------------------------------------------------------------------------ */
/* Checks                                                                                      */

static uint32_t id_bits(const uint64_t *ids, unsigned n)
{
    uint32_t b = 0;
    for (unsigned i = 0; i < n; i++)
        if (ids[i] < 32)
            b |= 1u << ids[i];
    return b;
}

static struct vset vset_of(const struct raft_conf *c)
{
    struct vset v = {.voters = id_bits(c->voters, c->voters_n), .old = id_bits(c->old, c->old_n)};
    return v;
}

static bool vset_eq(struct vset a, struct vset b)
{
    return a.voters == b.voters && a.old == b.old;
}

static bool majority_of(uint32_t voters, uint32_t in)
{
    return (unsigned)__builtin_popcount(voters & in) >=
           (unsigned)__builtin_popcount(voters) / 2 + 1;
}

/* Is `in` a quorum of v: a majority of C_new and, while joint, of C_old (thesis §4.3)? */
static bool vset_quorum(struct vset v, uint32_t in)
{
    return majority_of(v.voters, in) && (!v.old || majority_of(v.old, in));
}

/* Does every quorum of a meet every quorum of b? There are disjoint ones exactly when some
 * quorum of a leaves a quorum of b among the other nodes (quorums are closed upwards). Walks the
 * subsets of the nodes named (at most 2^SIM_NODES_MAX). */
static bool quorums_overlap(struct vset a, struct vset b)
{
    uint32_t u = a.voters | a.old | b.voters | b.old;
    for (uint32_t q = u;; q = (q - 1) & u) {
        if (vset_quorum(a, q) && vset_quorum(b, u & ~q))
            return false;
        if (q == 0)
            return true;
    }
}

/* Is the configuration entry (index, term) known committed? */
static bool conf_committed(struct sim *s, uint64_t index, uint64_t term)
{
    const struct rec *rc = rec_at(s, index);
    return rc->commit_term && rc->term == term;
}

/* Retire the configurations that can no longer decide anything (see struct conf_rec). */
static void confs_retire(struct sim *s)
{
    for (size_t i = 0; i < s->confs_n; i++) {
        struct conf_rec *c = &s->confs[i];
        if (c->retired)
            continue;
        const struct rec *at = rec_at(s, c->index);
        bool committed = c->index == 0 || (at->commit_term && at->term == c->term);
        if (c->index && at->commit_term && at->term != c->term) {
            c->retired = true; /* another entry committed at its index */
            continue;
        }
        if (!committed && c->term < s->committed_term_max) {
            /* an entry of a later term committed: every future leader holds it (§5.4), and its
             * log cannot hold this entry (uncommitted, older term) after it nor before it */
            c->retired = true;
            continue;
        }
        for (size_t k = 0; k < s->confs_n && !c->retired; k++) {
            const struct conf_rec *q = &s->confs[k];
            if (q->index > c->index && conf_committed(s, q->index, q->term))
                c->retired = true;
        }
    }
}

/* A configuration entry appears in a log: every configuration still active must share a voter
 * with it in any two quorums (thesis §4.1: single-server changes keep this by construction;
 * thesis §4.3: C_old,new meets C_old and C_new, and C_new appears only once C_old,new committed,
 * which retired C_old). */
static void note_conf(struct sim *s, uint64_t index, uint64_t term, struct vset voters)
{
    for (size_t i = 0; i < s->confs_n; i++)
        if (s->confs[i].index == index && s->confs[i].term == term)
            return;
    s->confs = grow(s->confs, &s->confs_cap, s->confs_n, sizeof(*s->confs));
    size_t at = s->confs_n++;
    s->confs[at] = (struct conf_rec){.index = index, .term = term, .voters = voters};
    confs_retire(s);
    /* retired at once: it appears only after what retires it (an entry of a later term
     * committed, say, in the log of a deposed leader that has not heard yet): it can decide
     * nothing, ever */
    if (s->confs[at].retired)
        return;
    for (size_t i = 0; i < at; i++) {
        const struct conf_rec *c = &s->confs[i];
        if (!c->retired && !quorums_overlap(c->voters, voters))
            fail(s, CK_QUORUM_OVERLAP,
                 "configuration %" PRIu64 "/%" PRIu64 " (voters %#x old %#x) and %" PRIu64
                 "/%" PRIu64 " (voters %#x old %#x) are active at once with disjoint quorums",
                 c->index, c->term, c->voters.voters, c->voters.old, index, term, voters.voters,
                 voters.old);
    }
}

/* Does nd lead, or did it lead in this term until the input just handled? A leader removed from
 * the configuration steps down as its removal commits (thesis §4.2.2), and CheckQuorum steps
 * down in the same term: its commit index is still its own decision. */
static bool leads_or_led(const struct node *nd)
{
    return raft_role(nd->r) == RAFT_LEADER ||
           (nd->role_seen == RAFT_LEADER && nd->term_seen == raft_term(nd->r));
}

/* thesis §4.3: a C_old,new entry is committed only once majorities of both its halves hold it.
 * Checked on the disks (committed entries never leave them) for the joint configuration entries
 * in (from, to] as a leader's commit index moves there: the check after the move looks at the
 * configuration in force after it, which may be C_new already (appended in the same input, once
 * C_old,new committed), so a C_old,new decided by C_new alone would pass it. */
static void check_joint_commits(struct sim *s, const struct node *nd, uint64_t from, uint64_t to)
{
    for (uint64_t i = from + 1; i <= to; i++) {
        const struct raft_entry *e = raft_entry_at(nd->r, i);
        struct raft_conf c;
        if (!e || e->type != RAFT_ENTRY_CONF || raft_conf_decode(e->data, e->len, &c) != 0 ||
            !raft_conf_is_joint(&c))
            continue;
        uint32_t held = 0;
        for (unsigned k = 0; k < s->n; k++)
            if (sim_store_durable_holds(&s->nodes[k].disk, i, e->term))
                held |= 1u << s->nodes[k].id;
        struct vset v = vset_of(&c);
        if (!vset_quorum(v, held))
            fail(s, CK_DECISION,
                 "leader %" PRIu64 " committed the joint configuration at %" PRIu64
                 " held by %#x only (voters %#x old %#x)",
                 nd->id, i, held, v.voters, v.old);
    }
}

/* §5.4.2 directly: within one leadership, commit moves only onto an entry of its own term. */
static void check_commit_rule(struct sim *s, struct node *nd)
{
    if (!leads_or_led(nd))
        return;
    uint64_t term = raft_term(nd->r), c = raft_commit(nd->r), t;
    if (term != nd->lead_term) {
        nd->lead_term = term;
        nd->lead_commit = c;
        return;
    }
    if (c == nd->lead_commit)
        return;
    if (c < nd->lead_commit)
        fail(s, CK_COMMIT_RULE, "leader %" PRIu64 " commit went back from %" PRIu64 " to %" PRIu64,
             nd->id, nd->lead_commit, c);
    if (raft_term_at(nd->r, c, &t) && t != term)
        fail(s, CK_COMMIT_RULE,
             "commit rule: leader %" PRIu64 " of term %" PRIu64 " moved commit to %" PRIu64
             " whose term is %" PRIu64 " (§5.4.2)",
             nd->id, term, c, t);
    check_joint_commits(s, nd, nd->lead_commit, c);
    nd->lead_commit = c;
    /* §5.3 / thesis §4.3: the entry is on the disks of a quorum of the leader's configuration
     * (a majority of C_old and of C_new while joint; the leader counts only where it votes) */
    uint32_t held = 0;
    for (unsigned k = 0; k < s->n; k++)
        if (sim_store_durable_holds(&s->nodes[k].disk, c, term))
            held |= 1u << s->nodes[k].id;
    struct vset v = vset_of(raft_conf(nd->r));
    if (!vset_quorum(v, held))
        fail(s, CK_DECISION,
             "leader %" PRIu64 " of term %" PRIu64 " committed %" PRIu64 " held by %#x only "
             "(voters %#x old %#x)",
             nd->id, term, c, held, v.voters, v.old);
}

/* §5.2 / thesis §4.3: a new leader of term was granted votes (as they left the voters, plus its
 * own) by a quorum of its configuration. */
static void check_election_quorum(struct sim *s, struct node *nd, uint64_t term)
{
    uint32_t granted = 1u << nd->id;
    if (term < s->votes_cap)
        granted |= s->votes[term].granted[nd->id - 1];
    struct vset v = vset_of(raft_conf(nd->r));
    if (!vset_quorum(v, granted))
        fail(s, CK_DECISION,
             "node %" PRIu64 " leads term %" PRIu64 " with the votes of %#x only (voters %#x old "
             "%#x)",
             nd->id, term, granted, v.voters, v.old);
}

static bool transfer_active(const struct node *nd)
{
    /* one tick short of the core's timeout, so that the check never races it */
    return nd->xfer_term && nd->xfer_term == raft_term(nd->r) && raft_role(nd->r) == RAFT_LEADER &&
           nd->xfer_ticks + 1 < SIM_ELECTION_TICKS;
}

/* What a leader's transfer and reads depend on: its term, role and voters. */
static void track_leader(struct node *nd)
{
    bool leads = raft_role(nd->r) == RAFT_LEADER;
    if (nd->xfer_term && (!leads || raft_term(nd->r) != nd->xfer_term ||
                          !raft_conf_is_voter(raft_conf(nd->r), nd->xfer_target)))
        nd->xfer_term = 0; /* the core cancels it with the leadership or the target's vote */
    if (!leads)
        return;
    struct vset v = vset_of(raft_conf(nd->r));
    if (vset_eq(v, nd->voters_seen))
        return;
    nd->voters_seen = v;
    for (unsigned i = 0; i < SIM_LEAD_READS_MAX; i++) {
        struct lead_read *lr = &nd->lreads[i];
        if (!lr->request_id || lr->term != raft_term(nd->r) || lr->voters_n > SIM_READ_CONFS)
            continue;
        if (lr->voters_n < SIM_READ_CONFS)
            lr->voters[lr->voters_n] = v;
        lr->voters_n++;
    }
}

/* A leader took a read (its own or a follower's): rounds started later have a context above
 * every heartbeat it sent so far. */
static void lread_take(struct node *nd, uint64_t request_id)
{
    struct lead_read *lr = NULL;
    for (unsigned i = 0; i < SIM_LEAD_READS_MAX; i++) {
        struct lead_read *x = &nd->lreads[i];
        if (!lr && (!x->request_id || x->term != raft_term(nd->r)))
            lr = x; /* free, or of a term whose reads the core dropped */
        if (nd->lreads[i].request_id == request_id && x->term == raft_term(nd->r)) {
            /* a duplicated request: the core answers each, the earliest first; the earliest's
             * floor is checked for all of them (a weaker bound, never a false failure) */
            nd->lreads[i].again++;
            return;
        }
    }
    if (!lr)
        return; /* not tracked: its answer is not checked */
    lr->request_id = request_id;
    lr->term = raft_term(nd->r);
    lr->floor = nd->hb_sent_max + 1;
    lr->voters[0] = vset_of(raft_conf(nd->r));
    lr->voters_n = 1;
    lr->again = 0;
}

/* Thesis §6.4 step 3: a read leaves the leader only after a majority acknowledged a heartbeat
 * round that started after the read arrived, in one of the configurations the leader had. */
static void check_read_round(struct sim *s, struct node *nd, uint64_t request_id)
{
    struct lead_read *lr = NULL;
    for (unsigned i = 0; i < SIM_LEAD_READS_MAX && !lr; i++)
        if (nd->lreads[i].request_id == request_id && nd->lreads[i].term == raft_term(nd->r))
            lr = &nd->lreads[i];
    if (!lr)
        return; /* not a read this node took as leader */
    if (lr->again)
        lr->again--; /* more answers to this request id are due */
    else
        lr->request_id = 0;
    if (lr->voters_n > SIM_READ_CONFS || lr->term != raft_term(nd->r))
        return; /* the acks of its term are gone: cannot tell */
    uint32_t acked = 1u << nd->id;
    for (unsigned k = 0; k < s->n; k++)
        if (nd->hb_ack[k].term == lr->term && nd->hb_ack[k].max >= lr->floor)
            acked |= 1u << s->nodes[k].id;
    for (unsigned i = 0; i < lr->voters_n; i++)
        if (vset_quorum(lr->voters[i], acked))
            return;
    fail(s, CK_READ_ROUND,
         "read %" PRIu64 " released by leader %" PRIu64 " (term %" PRIu64
         ") without a majority acknowledging a heartbeat round >= %" PRIu64 " (acked %#x)",
         request_id, nd->id, lr->term, lr->floor, acked);
}

/* Checks on a message at the moment it leaves node nd (after its batch was persisted). */
static void check_outgoing(struct sim *s, struct node *nd, const struct raft_msg *m)
{
    if (m->to == 0 || m->to > s->n)
        return;
    unsigned from = (unsigned)(nd->id - 1), to = (unsigned)(m->to - 1);
    /* promises are checked against what survives a crash, not the page cache */
    const struct raft_hard_state *hs = sim_store_durable_hs(&nd->disk);
    switch (m->type) {
    case RAFT_MSG_VOTE_RESP:
        if (!m->reject) { /* for the decision check: the votes a candidate could count */
            s->votes = grow(s->votes, &s->votes_cap, (size_t)m->term, sizeof(*s->votes));
            s->votes[m->term].granted[to] |= 1u << nd->id;
        }
        /* §5.1: the vote is on disk (or a later term is) before it is sent */
        if (!m->reject && (hs->term < m->term || (hs->term == m->term && hs->vote != m->to)))
            fail(s, CK_DISK_PROMISE,
                 "node %" PRIu64 " grants its vote in term %" PRIu64 " to %" PRIu64
                 " but its disk holds term %" PRIu64 " vote %" PRIu64,
                 nd->id, m->term, m->to, hs->term, hs->vote);
        break;
    case RAFT_MSG_APP_RESP: {
        if (m->reject)
            break;
        if (m->index > sim_store_durable_last(&nd->disk))
            fail(s, CK_DISK_PROMISE,
                 "node %" PRIu64 " acknowledges index %" PRIu64 " but its disk ends at %" PRIu64,
                 nd->id, m->index, sim_store_durable_last(&nd->disk));
        struct term_max *a = &s->app_ack[from][to];
        if (m->term > a->term) {
            a->term = m->term;
            a->max = 0;
        }
        if (m->term == a->term && m->index > a->max)
            a->max = m->index;
        break;
    }
    case RAFT_MSG_HEARTBEAT: {
        /* raft.h: a heartbeat never tells a follower to commit beyond what it acknowledged */
        const struct term_max *a = &s->app_ack[to][from];
        if (m->term >= a->term) {
            uint64_t acked = a->term == m->term ? a->max : 0;
            if (m->commit > acked)
                fail(s, CK_HEARTBEAT_COMMIT,
                     "leader %" PRIu64 " heartbeat of term %" PRIu64 " tells %" PRIu64
                     " to commit %" PRIu64 " but it acknowledged only %" PRIu64,
                     nd->id, m->term, m->to, m->commit, acked);
        }
        if (m->context > nd->hb_sent_max)
            nd->hb_sent_max = m->context;
        break;
    }
    case RAFT_MSG_READ_INDEX_RESP:
        if (!m->reject)
            check_read_round(s, nd, m->context);
        break;
    default:
        break;
    }
}

static void note_commits(struct sim *s, struct node *nd)
{
    if (!leads_or_led(nd))
        return;
    uint64_t c = raft_commit(nd->r), term = raft_term(nd->r);
    uint64_t from = raft_first_index(nd->r);
    if (from <= s->committed_max)
        from = s->committed_max + 1; /* noted already, by this or an earlier leader */
    for (uint64_t i = from; i <= c; i++) {
        struct rec *rc = rec_at(s, i);
        const struct raft_entry *e = raft_entry_at(nd->r, i);
        if (rc->commit_term)
            continue;
        if (rc->term && rc->term != e->term)
            fail(s, CK_COMPLETENESS, "committed entry %" PRIu64 " changed term", i);
        rc->term = e->term;
        rc->ehash = entry_hash(e);
        rc->commit_term = term;
        if (e->term > s->committed_term_max)
            s->committed_term_max = e->term;
    }
    if (c > s->committed_max)
        s->committed_max = c;
}

/* thesis §4.1, §4.3 on the leader's log: it appends a configuration entry only once the newest
 * one in its log is committed (C_new of a joint change only once C_old,new is), so its log never
 * holds two configuration entries of its own term above its commit index. (Entries of earlier
 * terms may still sit there, uncommitted as far as it knows, until it commits in its term.)
 * O(uncommitted entries). */
static void check_conf_entries(struct sim *s, const struct node *nd)
{
    if (raft_role(nd->r) != RAFT_LEADER)
        return;
    uint64_t term = raft_term(nd->r), first = 0;
    for (uint64_t i = raft_commit(nd->r) + 1; i <= raft_last_index(nd->r); i++) {
        const struct raft_entry *e = raft_entry_at(nd->r, i);
        if (!e || e->type != RAFT_ENTRY_CONF || e->term != term)
            continue;
        if (first) {
            fail(s, CK_CONF_RULE,
                 "leader %" PRIu64 " of term %" PRIu64 " holds configuration entries %" PRIu64
                 " and %" PRIu64 " of its term above its commit %" PRIu64 " (thesis §4.1, §4.3)",
                 nd->id, term, first, i, raft_commit(nd->r));
            return;
        }
        first = i;
    }
}

static void replay_to_new_leader(struct sim *s, const struct node *nd);

static void check_leaders(struct sim *s, struct node *nd)
{
    if (!nd->r)
        return;
    note_commits(s, nd); /* before a later call could make it step down */
    check_commit_rule(s, nd);
    check_conf_entries(s, nd);
    track_leader(nd);
    uint8_t role = (uint8_t)raft_role(nd->r);
    uint64_t term = raft_term(nd->r);
    if (term < nd->term_seen)
        fail(s, CK_ELECTION, "node %" PRIu64 " term went back from %" PRIu64 " to %" PRIu64, nd->id,
             nd->term_seen, term);
    bool new_leader =
        role == RAFT_LEADER && (nd->role_seen != RAFT_LEADER || term != nd->term_seen);
    nd->role_seen = role;
    nd->term_seen = term;
    if (!new_leader)
        return;
    s->st.elections++;
    trace(s, "node %" PRIu64 " leads term %" PRIu64 " (last %" PRIu64 ", commit %" PRIu64 ")",
          nd->id, term, raft_last_index(nd->r), raft_commit(nd->r));
    replay_to_new_leader(s, nd);
    stale_acks_to_new_leader(s, nd);
    s->leader_of_term = grow(s->leader_of_term, &s->terms_cap, (size_t)term, sizeof(uint64_t));
    uint64_t *l = &s->leader_of_term[term];
    if (*l && *l != nd->id)
        fail(s, CK_ELECTION, "two leaders in term %" PRIu64 ": %" PRIu64 " and %" PRIu64, term, *l,
             nd->id);
    *l = nd->id;
    check_election_quorum(s, nd, term);
    /* leader completeness (§5.4.1) */
    const struct raft_snapshot *snap = raft_snapshot(nd->r);
    for (uint64_t i = 1; i <= s->committed_max; i++) {
        struct rec *rc = rec_at(s, i);
        if (!rc->commit_term || rc->commit_term >= term)
            continue;
        uint64_t t;
        if (i < snap->index)
            continue; /* covered by the snapshot, checked at its index */
        if (!raft_term_at(nd->r, i, &t) || t != rc->term) {
            fail(s, CK_COMPLETENESS,
                 "leader completeness: leader %" PRIu64 " of term %" PRIu64 " lacks entry %" PRIu64
                 " (term %" PRIu64 ") committed in term %" PRIu64,
                 nd->id, term, i, rc->term, rc->commit_term);
            return;
        }
    }
}

/* Log matching over every entry a node persists. */
static void check_persisted(struct sim *s, struct node *nd, const struct raft_entry *es, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        const struct raft_entry *e = &es[k];
        uint64_t prev = 0;
        if (k > 0)
            prev = es[k - 1].term;
        else if (!raft_term_at(nd->r, e->index - 1, &prev))
            prev = UINT64_MAX; /* unknown here */
        struct lm_slot v = {
            .index = e->index, .term = e->term, .prev_term = prev, .ehash = entry_hash(e)};
        if (e->type == RAFT_ENTRY_CONF) {
            struct raft_conf c;
            if (raft_conf_decode(e->data, e->len, &c) == 0)
                note_conf(s, e->index, e->term, vset_of(&c));
        }
        struct lm_slot *got = lm_get(s, &v);
        if (got->ehash != v.ehash)
            fail(s, CK_LOG_MATCHING,
                 "log matching: two different entries at index %" PRIu64 " term %" PRIu64, e->index,
                 e->term);
        if (got->prev_term == UINT64_MAX)
            got->prev_term = prev;
        else if (prev != UINT64_MAX && got->prev_term != prev)
            fail(s, CK_LOG_MATCHING,
                 "log matching: entry %" PRIu64 "/%" PRIu64 " follows term %" PRIu64
                 " on node %" PRIu64 " but %" PRIu64 " elsewhere",
                 e->index, e->term, prev, nd->id, got->prev_term);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* State machine                                                                               */

#define SM_SNAP_BYTES 24u

/* A snapshot image: the state machine (index, hash, writes: SM_SNAP_BYTES) and then padding
 * made from it, s->img_bytes in all, so that transfers take several chunks. Bytes off .. off +
 * len - 1 of the image whose head is `head` into out. */
static void img_read(const uint8_t *head, uint64_t off, uint8_t *out, uint32_t len)
{
    uint64_t seed = XXH3_64bits(head, SM_SNAP_BYTES);
    for (uint32_t i = 0; i < len; i++) {
        uint64_t p = off + i;
        if (p < SM_SNAP_BYTES) {
            out[i] = head[p];
            continue;
        }
        uint64_t z = (seed ^ (p / 8)) * 0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 29)) * 0xbf58476d1ce4e5b9ull;
        out[i] = (uint8_t)((z ^ (z >> 32)) >> (8 * (p % 8)));
    }
}

static uint64_t img_hash(const struct sim *s, const uint8_t *head)
{
    uint8_t *b = malloc((size_t)s->img_bytes);
    if (!b)
        exit(2);
    img_read(head, 0, b, (uint32_t)s->img_bytes);
    uint64_t h = XXH3_64bits(b, (size_t)s->img_bytes);
    free(b);
    return h;
}

static void img_keep(struct node *nd, uint64_t index, const uint8_t *head)
{
    struct sim_img *g = &nd->imgs[nd->imgs_next++ % SIM_IMAGES];
    g->index = index;
    memcpy(g->head, head, SM_SNAP_BYTES);
}

/* cfg.snapshot_read: the image of the node's snapshot at index, if it still holds it. */
static int node_snapshot_read(void *ctx, uint64_t index, uint64_t off, uint8_t *buf, uint32_t len)
{
    struct node *nd = ctx;
    if (off + len > nd->sim->img_bytes)
        return CS_EINVAL;
    for (unsigned i = 0; i < SIM_IMAGES; i++) {
        if (nd->imgs[i].index == index) {
            img_read(nd->imgs[i].head, off, buf, len);
            return 0;
        }
    }
    return -ENOENT; /* replaced by newer compactions: the core starts a new transfer */
}

static void sm_reset(struct node *nd)
{
    nd->sm_index = 0;
    nd->sm_hash = 0;
    nd->sm_writes = 0;
    memset(nd->imgs, 0, sizeof(nd->imgs));
    const struct raft_snapshot *sn = &nd->disk.img.snap;
    if (sn->index && sn->bytes >= SM_SNAP_BYTES) {
        const uint8_t *d = nd->disk.img.snap_data;
        memcpy(&nd->sm_index, d, 8);
        memcpy(&nd->sm_hash, d + 8, 8);
        memcpy(&nd->sm_writes, d + 16, 8);
        img_keep(nd, sn->index, d);
    }
}

static void serve_reads(struct sim *s, struct node *nd)
{
    unsigned k = 0;
    for (unsigned i = 0; i < nd->reads_n; i++) {
        struct read_wait *w = &nd->reads[i];
        if (w->index && nd->sm_index >= w->index) {
            if (w->index < w->acked_max || nd->sm_index < w->acked_max)
                fail(s, CK_STALE_READ,
                     "stale read on node %" PRIu64 ": read index %" PRIu64 " served at %" PRIu64
                     " but a write at %" PRIu64 " was acknowledged before it began",
                     nd->id, w->index, nd->sm_index, w->acked_max);
            s->st.reads++;
            continue;
        }
        if (!w->index && s->now - w->start > SIM_READ_UNITS)
            continue; /* lost on the way: the client gives up */
        nd->reads[k++] = *w;
    }
    nd->reads_n = k;
}

static void sm_apply(struct sim *s, struct node *nd, const struct raft_entry *e)
{
    if (e->index != nd->sm_index + 1) {
        fail(s, CK_SM_SAFETY, "node %" PRIu64 " applies %" PRIu64 " after %" PRIu64, nd->id,
             e->index, nd->sm_index);
        return;
    }
    uint64_t eh = entry_hash(e);
    nd->sm_hash = XXH3_64bits_withSeed(&eh, sizeof(eh), nd->sm_hash);
    nd->sm_index = e->index;
    if (e->type == RAFT_ENTRY_NORMAL && e->len >= 8)
        nd->sm_writes++;
    struct rec *rc = rec_at(s, e->index);
    if (!rc->commit_term)
        fail(s, CK_SM_SAFETY, "node %" PRIu64 " applies %" PRIu64 " which no leader committed",
             nd->id, e->index);
    if (rc->term && (rc->term != e->term || rc->ehash != eh))
        fail(s, CK_SM_SAFETY,
             "state machine safety: node %" PRIu64 " applies a different entry at %" PRIu64
             " (term %" PRIu64 " vs %" PRIu64 ")",
             nd->id, e->index, e->term, rc->term);
    if (rc->sm_hash && rc->sm_hash != nd->sm_hash)
        fail(s, CK_SM_SAFETY, "state machine safety: node %" PRIu64 " diverges at %" PRIu64, nd->id,
             e->index);
    rc->term = e->term;
    rc->ehash = eh;
    rc->sm_hash = nd->sm_hash;
    if (e->type == RAFT_ENTRY_NORMAL && e->len >= 8 && e->index > s->acked_max)
        s->acked_max = e->index;
}

/* The image a node's store installed (the chunks its core wrote) must be, byte for byte, the one
 * the leader compacted at that index (raft.h "Snapshots": only a whole transfer installs). */
static void check_snap_bytes(struct sim *s, struct node *nd, const struct raft_snapshot *sn)
{
    const struct sim_image *m = &nd->disk.img;
    const struct rec *rc = rec_at(s, sn->index);
    uint64_t got = m->snap.bytes ? XXH3_64bits(m->snap_data, (size_t)m->snap.bytes) : 0;
    if (m->snap.index != sn->index || m->snap.bytes != s->img_bytes || got != rc->snap_hash)
        fail(s, CK_SNAP_BYTES,
             "node %" PRIu64 " installed snapshot %" PRIu64 " of %" PRIu64
             " bytes (hash %016" PRIx64 ") but the image compacted there is %" PRIu64
             " bytes (hash %016" PRIx64 ")",
             nd->id, sn->index, m->snap.bytes, got, s->img_bytes, rc->snap_hash);
}

static void sm_install(struct sim *s, struct node *nd, const struct raft_snapshot *sn)
{
    check_snap_bytes(s, nd, sn);
    if (s->failed)
        return;
    const uint8_t *d = nd->disk.img.snap_data;
    uint64_t idx, h;
    memcpy(&idx, d, 8);
    memcpy(&h, d + 8, 8);
    if (idx != sn->index)
        fail(s, CK_SM_SAFETY, "snapshot index %" PRIu64 " holds state at %" PRIu64, sn->index, idx);
    struct rec *rc = rec_at(s, sn->index);
    if (rc->sm_hash && rc->sm_hash != h)
        fail(s, CK_SM_SAFETY, "snapshot at %" PRIu64 " holds a state no node had", sn->index);
    if (rc->term && rc->term != sn->term)
        fail(s, CK_SM_SAFETY,
             "snapshot at %" PRIu64 " has term %" PRIu64 ", the entry there %" PRIu64, sn->index,
             sn->term, rc->term);
    if (!rc->commit_term)
        fail(s, CK_SM_SAFETY, "snapshot at %" PRIu64 " covers entries no leader committed",
             sn->index);
    rc->sm_hash = h;
    nd->sm_index = idx;
    nd->sm_hash = h;
    memcpy(&nd->sm_writes, d + 16, 8);
    img_keep(nd, sn->index, d);
    s->st.snapshots++;
    trace(s, "node %" PRIu64 " installs snapshot %" PRIu64 "/%" PRIu64, nd->id, sn->index,
          sn->term);
}

/* ------------------------------------------------------------------------------------------ */
/* Nodes                                                                                       */

static struct raft_config node_config(struct sim *s, struct node *nd)
{
    struct raft_config c = {
        .id = nd->id,
        .election_ticks = SIM_ELECTION_TICKS,
        .heartbeat_ticks = SIM_HEARTBEAT_TICKS,
        .pre_vote = s->pre_vote,
        .check_quorum = s->check_quorum,
        .inflight_msgs_max = s->inflight_msgs_max,
        .inflight_bytes_max = s->inflight_bytes_max,
        .msg_bytes_max = s->msg_bytes_max,
        .committed_bytes_max = s->committed_bytes_max,
        .uncommitted_bytes_max = s->uncommitted_bytes_max,
        .snapshot_chunk_bytes = s->chunk_bytes,
        .snapshot_inflight_max = s->chunk_window,
        .snapshot_read = node_snapshot_read,
        .snapshot_ctx = (void *)nd,
        .rand = rng_cb,
        .rand_ctx = &s->rng,
    };
    c.bootstrap.voters_n = (uint8_t)s->n;
    for (unsigned i = 0; i < s->n; i++)
        c.bootstrap.voters[i] = i + 1;
    return c;
}

/* Atomic batches (struct raft_storage.save): after any crash the store holds exactly the batches
 * whose save returned 0, so the image a restart finds is the one after the last good save. */
static void check_restart_image(struct sim *s, const struct node *nd)
{
    struct sim_mark now = sim_store_mark_now(&nd->disk), want = nd->disk.mark;
    if (now.hs.term != want.hs.term || now.hs.vote != want.hs.vote ||
        now.hs.commit != want.hs.commit || now.snap_index != want.snap_index ||
        now.last != want.last || now.last_term != want.last_term)
        fail(s, CK_ATOMIC,
             "node %" PRIu64 " restarts with term %" PRIu64 " vote %" PRIu64 " last %" PRIu64
             "/%" PRIu64 " but its last good save left term %" PRIu64 " vote %" PRIu64
             " last %" PRIu64 "/%" PRIu64 " (part of a batch survived)",
             nd->id, now.hs.term, now.hs.vote, now.last, now.last_term, want.hs.term, want.hs.vote,
             want.last, want.last_term);
}

static void node_start(struct sim *s, struct node *nd)
{
    check_restart_image(s, nd);
    struct raft_config c = node_config(s, nd);
    struct raft_storage ops;
    sim_store_ops(&nd->disk, &ops);
    int rc = raft_new(&c, &ops, &nd->r);
    if (rc != 0) {
        fail(s, CK_API, "raft_new of node %" PRIu64 " failed: %d", nd->id, rc);
        return;
    }
    sm_reset(nd);
    nd->role_seen = RAFT_FOLLOWER;
    nd->term_seen = raft_term(nd->r);
    nd->reads_n = 0;
    nd->disk_wait = 0;
    nd->lead_term = 0;
    nd->lead_commit = 0;
    nd->xfer_term = 0;
    nd->hb_sent_max = 0;
    memset(nd->hb_ack, 0, sizeof(nd->hb_ack));
    memset(&nd->voters_seen, 0, sizeof(nd->voters_seen));
    memset(nd->lreads, 0, sizeof(nd->lreads));
}

static void node_crash(struct sim *s, struct node *nd, uint64_t down_units)
{
    raft_free(nd->r);
    nd->r = NULL;
    sim_store_crash(&nd->disk); /* the page cache and any torn frame are gone */
    nd->reads_n = 0;
    nd->paused_until = 0;
    nd->down_until = s->now + down_units;
    s->st.crashes++;
    trace(s, "node %" PRIu64 " crashes until t=%" PRIu64 " (disk last %" PRIu64 ")", nd->id,
          nd->down_until, sim_store_last(&nd->disk));
}

/* The disk fault of the diskfault class for the next save of a batch with durable content. */
static uint8_t arm_disk_fault(struct sim *s, struct node *nd, const struct raft_ready *rd)
{
    uint8_t fault = SIM_DISK_OK;
    if (!rd->chunk && !rd->snapshot && !rd->entries_n && !rd->hard_state_changed)
        return fault;
    if (rng_ppm(&s->rng, s->f.disk_torn_ppm))
        fault = SIM_DISK_TORN;
    else if (rng_ppm(&s->rng, s->f.disk_fsync_ppm))
        fault = SIM_DISK_FSYNC;
    else if (rng_ppm(&s->rng, s->f.disk_eio_ppm))
        fault = SIM_DISK_EIO;
    nd->disk.fault = fault;
    nd->disk.torn_entries = (uint32_t)rng_below(&s->rng, rd->entries_n + 1);
    return fault;
}

/* raft.h: one batch, one save, and what it returned 0 for is what the disk now holds. */
static void check_batch_saved(struct sim *s, struct node *nd, const struct raft_ready *rd,
                              uint64_t saves_before)
{
    bool durable = rd->chunk || rd->snapshot || rd->entries_n || rd->hard_state_changed;
    if (nd->disk.saves != saves_before + (durable ? 1 : 0))
        fail(s, CK_ATOMIC, "node %" PRIu64 " saved a batch in %" PRIu64 " units", nd->id,
             nd->disk.saves - saves_before);
    const struct raft_hard_state *hs = sim_store_durable_hs(&nd->disk);
    if (rd->hard_state_changed &&
        (hs->term != rd->hard_state.term || hs->vote != rd->hard_state.vote ||
         hs->commit != rd->hard_state.commit))
        fail(s, CK_ATOMIC, "node %" PRIu64 " batch saved without its hard state", nd->id);
    if (rd->entries_n && sim_store_durable_last(&nd->disk) != rd->entries[rd->entries_n - 1].index)
        fail(s, CK_ATOMIC, "node %" PRIu64 " batch saved without its entries", nd->id);
}

static void compact(struct sim *s, struct node *nd, uint64_t more);
static bool probe_breaks(struct sim *s, unsigned l, const struct raft_msg *m);
static void probe_chunk_arrived(struct sim *s, const struct raft_msg *m);

/* Persist, send, apply and advance one ready batch (raft.h order). A failed save stops the node
 * (raft.h, struct raft_storage): nothing of the batch is sent or applied. */
static void node_ready(struct sim *s, unsigned idx)
{
    struct node *nd = &s->nodes[idx];
    struct raft_ready rd;
    raft_ready(nd->r, &rd);
    struct raft_storage ops;
    sim_store_ops(&nd->disk, &ops);
    uint8_t fault = arm_disk_fault(s, nd, &rd);
    uint64_t saves_before = nd->disk.saves;
    /* log matching over every batch handed to the disk, a failed or torn save's too: an entry
     * of term T exists only once the term and vote that make its node T's leader are durable
     * (a candidate's own vote counts from the advance after its save), so no restart can let
     * the node lead T again and create another entry at the same (index, T) */
    if (rd.entries_n)
        check_persisted(s, nd, rd.entries, rd.entries_n);
    int rc = raft_ready_persist(&rd, &ops);
    nd->disk.fault = SIM_DISK_OK;
    if (fault != SIM_DISK_OK) {
        s->st.disk_faults++;
        trace(s, "node %" PRIu64 " disk fault %u on a save (persist returned %d)", nd->id, fault,
              rc);
    }
    if (fault == SIM_DISK_TORN) { /* the power went during the write */
        node_crash(s, nd, SIM_TICK_UNITS * (1 + rng_below(&s->rng, s->f.down_ticks_max)));
        return;
    }
    if (rc != 0 && fault != SIM_DISK_OK) { /* an I/O error stops the node */
        node_crash(s, nd, SIM_TICK_UNITS * (1 + rng_below(&s->rng, s->f.down_ticks_max)));
        return;
    }
    if (rc != 0)
        fail(s, CK_API, "persist on node %" PRIu64 " failed: %d", nd->id, rc);
    if (fault == SIM_DISK_OK)
        check_batch_saved(s, nd, &rd, saves_before);
    note_commits(s, nd);
    uint64_t snap_failed[SIM_NODES_MAX];
    unsigned snap_failed_n = 0;
    bool promised = false; /* a vote granted or entries acknowledged */
    bool snap_reset = false;
    for (size_t i = 0; i < rd.msgs_n; i++) {
        const struct raft_msg *m = &rd.msgs[i];
        promised |= !m->reject && (m->type == RAFT_MSG_VOTE_RESP || m->type == RAFT_MSG_APP_RESP);
        check_outgoing(s, nd, m);
        s->st.chunks += m->type == RAFT_MSG_SNAP;
        if (probe_breaks(s, idx, m))
            continue; /* the snap probe broke this stream: lost */
        bool sent = send_frame(s, idx, m);
        /* a transfer's stream breaks after this chunk left (a connection reset): the transport
         * reports it, and the leader compacts before the next transfer begins, so that chunks
         * of two transfers of different snapshots meet at the follower */
        bool reset = sent && m->type == RAFT_MSG_SNAP && m->chunk.offset > 0 &&
                     rng_ppm(&s->rng, s->f.snap_reset_ppm);
        snap_reset |= reset;
        if ((!sent || reset) && m->type == RAFT_MSG_SNAP && snap_failed_n < SIM_NODES_MAX)
            snap_failed[snap_failed_n++] = m->to;
    }
    if (rd.snapshot)
        sm_install(s, nd, rd.snapshot);
    for (size_t i = 0; i < rd.committed_n; i++)
        sm_apply(s, nd, &rd.committed[i]);
    for (size_t i = 0; i < rd.reads_n; i++) {
        check_read_round(s, nd, rd.reads[i].request_id);
        for (unsigned k = 0; k < nd->reads_n; k++)
            if (nd->reads[k].request_id == rd.reads[i].request_id)
                nd->reads[k].index = rd.reads[i].index ? rd.reads[i].index : 1;
    }
    if (fault != SIM_DISK_OK) /* after the sends: the disk-promise check sees their effect */
        fail(s, CK_IO_STOP,
             "node %" PRIu64 " went on after its storage failed a save (persist returned 0)",
             nd->id);
    bool installed = rd.snapshot != NULL;
    raft_advance(nd->r);
    for (unsigned i = 0; i < snap_failed_n; i++)
        raft_report_snapshot(nd->r, snap_failed[i], false);
    if (snap_reset) {
        compact(s, nd, 0); /* may crash it (snapcrash) */
        if (!nd->r)
            return;
    }
    serve_reads(s, nd);
    check_leaders(s, nd);
    /* crash right after answering: what the answers promised must already be on disk (§5.1) */
    if ((promised && rng_ppm(&s->rng, s->f.crash_after_ack_ppm)) ||
        (installed && rng_ppm(&s->rng, s->f.crash_after_snap_ppm)))
        node_crash(s, nd, SIM_TICK_UNITS * (1 + rng_below(&s->rng, s->f.down_ticks_max)));
}

static bool paused(const struct sim *s, const struct node *nd)
{
    return nd->paused_until > s->now;
}

static void deliver(struct sim *s, struct net_msg *m)
{
    struct node *nd = &s->nodes[m->to];
    if (!nd->r || link_cut(s, m->from, m->to))
        return;
    struct raft_msg msg;
    int rc = raft_msg_decode(m->buf, m->len, &msg);
    if (rc == CS_ECORRUPT) {
        s->st.corrupt++;
        return;
    }
    if (rc != 0) {
        fail(s, CK_API, "decode failed: %d", rc);
        return;
    }
    uint64_t commit_before = raft_commit(nd->r), floor_bound = UINT64_MAX;
    if (msg.type == RAFT_MSG_APP) /* §5.3 step 5: min(leaderCommit, index of last new entry) */
        floor_bound =
            msg.commit < msg.index + msg.entries_n ? msg.commit : msg.index + msg.entries_n;
    else if (msg.type == RAFT_MSG_HEARTBEAT)
        floor_bound = msg.commit;
    rc = raft_step(nd->r, &msg);
    if (rc == 0 && msg.type == RAFT_MSG_SNAP)
        probe_chunk_arrived(s, &msg);
    raft_msg_release(&msg);
    if (rc != 0)
        fail(s, CK_API, "raft_step: %d", rc);
    uint64_t commit = raft_commit(nd->r);
    if (floor_bound != UINT64_MAX && commit > commit_before && commit > floor_bound)
        fail(s, CK_FOLLOWER_COMMIT,
             "node %" PRIu64 " commits %" PRIu64 " on a %s allowing %" PRIu64, nd->id, commit,
             raft_msg_type_name(msg.type), floor_bound);
    bool leads = raft_role(nd->r) == RAFT_LEADER && msg.term == raft_term(nd->r);
    if (leads && msg.type == RAFT_MSG_HEARTBEAT_RESP) {
        struct term_max *a = &nd->hb_ack[(msg.from - 1) % SIM_NODES_MAX];
        if (a->term != msg.term) {
            a->term = msg.term;
            a->max = 0;
        }
        if (msg.context > a->max)
            a->max = msg.context;
    }
    if (leads && msg.type == RAFT_MSG_READ_INDEX)
        lread_take(nd, msg.context);
    check_leaders(s, nd);
}

/* ------------------------------------------------------------------------------------------ */
/* Clients and faults                                                                          */

static struct node *leader(struct sim *s)
{
    struct node *best = NULL;
    for (unsigned i = 0; i < s->n; i++) {
        struct node *nd = &s->nodes[i];
        if (nd->r && raft_role(nd->r) == RAFT_LEADER &&
            (!best || raft_term(nd->r) > raft_term(best->r)))
            best = nd;
    }
    return best;
}

/* raft.h: CS_EFULL only over uncommitted_bytes_max (the log's entry cap is far away here). The
 * core counts the entries its leader appended in its term and not committed yet; it may count
 * less (a commit releases entries of earlier terms too), never more. */
static void check_full(struct sim *s, struct node *l, uint32_t len)
{
    uint64_t bytes = 0, term = raft_term(l->r), last = raft_last_index(l->r);
    if (last - raft_snapshot(l->r)->index + 1 >= RAFT_LOG_ENTRIES_MAX)
        return;
    for (uint64_t i = raft_commit(l->r) + 1; i <= last; i++) {
        const struct raft_entry *e = raft_entry_at(l->r, i);
        if (e && e->term == term)
            bytes += e->len;
    }
    if (bytes + len <= s->uncommitted_bytes_max)
        fail(s, CK_API,
             "leader %" PRIu64 " refused a proposal of %" PRIu32 " bytes (CS_EFULL) with %" PRIu64
             " bytes of its term uncommitted, cap %" PRIu64,
             l->id, len, bytes, s->uncommitted_bytes_max);
}

/* One client write at l: 0 if the core took it, else its refusal (checked here). */
static int write_one(struct sim *s, struct node *l)
{
    uint8_t data[72];
    uint64_t id = ++s->next_write;
    memcpy(data, &id, 8);
    uint32_t len = 8 + (uint32_t)rng_below(&s->rng, 64);
    for (uint32_t i = 8; i < len; i++)
        data[i] = (uint8_t)rng_next(&s->rng);
    uint64_t index;
    bool xfer = transfer_active(l);
    int rc = raft_propose(l->r, data, len, &index);
    if (rc == 0 && xfer)
        fail(s, CK_TRANSFER, "leader %" PRIu64 " accepted a proposal during a transfer to %" PRIu64,
             l->id, l->xfer_target);
    if (rc == 0)
        s->st.commits++;
    else if (rc == CS_EFULL)
        check_full(s, l, len);
    else if (rc != RAFT_EBUSY)
        fail(s, CK_API, "propose: %d", rc);
    return rc;
}

static void client_write(struct sim *s, struct node *l)
{
    /* closed-loop clients: no new write while SIM_WRITES_INFLIGHT are uncommitted at this
     * leader, so offered load follows what replication can carry (one entry per message and
     * one message in flight is slow) */
    if (raft_last_index(l->r) - raft_commit(l->r) >= SIM_WRITES_INFLIGHT ||
        s->now < s->writes_held_until)
        return;
    (void)write_one(s, l);
}

static void client_read(struct sim *s, struct node *l)
{
    if (l->reads_n >= SIM_READS_MAX)
        return;
    uint64_t id = ++s->next_read;
    int rc = raft_read_index(l->r, id);
    if (rc == RAFT_EBUSY || rc == CS_EFULL || rc == RAFT_ENOTLEADER)
        return;
    if (rc != 0) {
        fail(s, CK_API, "read_index: %d", rc);
        return;
    }
    if (raft_role(l->r) == RAFT_LEADER)
        lread_take(l, id);
    struct read_wait *w = &l->reads[l->reads_n++];
    w->request_id = id;
    w->acked_max = s->acked_max;
    w->index = 0;
    w->start = s->now;
}

/* The change the deposed-change scenario wants at leader l: promote a learner, or remove a voter
 * other than l. Returns false if l's configuration has none to offer. */
static bool conf_pick(struct sim *s, const struct node *l, int want, uint64_t *target)
{
    const struct raft_conf *c = raft_conf(l->r);
    if (want == RAFT_CC_PROMOTE && c->learners_n > 0) {
        *target = c->learners[rng_below(&s->rng, c->learners_n)];
        return true;
    }
    if (want == RAFT_CC_REMOVE && c->voters_n > 1) {
        *target = c->voters[rng_below(&s->rng, c->voters_n)];
        return *target != l->id;
    }
    return false;
}

/* Is a change of leader l in progress: joint, or a configuration entry not yet committed? The
 * core accepts no other change then (raft.h, thesis §4.1, §4.3). O(uncommitted entries). */
static bool change_pending(const struct node *l)
{
    if (raft_conf_is_joint(raft_conf(l->r)))
        return true;
    for (uint64_t i = raft_commit(l->r) + 1; i <= raft_last_index(l->r); i++) {
        const struct raft_entry *e = raft_entry_at(l->r, i);
        if (e && e->type == RAFT_ENTRY_CONF)
            return true;
    }
    return false;
}

/* The API contracts of a change the core accepted at l (rc 0): no change during a transfer, before
 * the leader committed an entry of its term, or while another is joint or uncommitted. */
static void check_change_allowed(struct sim *s, const struct node *l, bool xfer, bool in_term,
                                 bool pending)
{
    if (xfer)
        fail(s, CK_TRANSFER, "leader %" PRIu64 " accepted a conf change during a transfer", l->id);
    if (!in_term)
        fail(s, CK_CONF_RULE,
             "leader %" PRIu64 " of term %" PRIu64 " accepted a conf change before committing an "
             "entry of its term (commit %" PRIu64 ")",
             l->id, raft_term(l->r), raft_commit(l->r));
    if (pending)
        fail(s, CK_CONF_RULE,
             "leader %" PRIu64 " accepted a conf change while joint or while a change is "
             "uncommitted (thesis §4.3)",
             l->id);
}

/* A random voter set for a change of several voters at once (thesis §4.3) from cur (bit per
 * node id): replace two, grow by two, shrink by two, swap all (the new voters disjoint from the
 * old ones when there are members enough), or any non-empty set. New voters come from `all`, the
 * members: a node joins as a learner first (thesis §4.2.1), else a snapshot taken before it
 * joined, which it refuses, could be all the leader has to catch it up with. */
static uint32_t pick_voters(struct sim *s, uint32_t cur, uint32_t all)
{
    uint32_t want = cur;
    unsigned pattern = (unsigned)rng_below(&s->rng, 5);
    /* mostly grow while voters are a minority of the members: shrinking changes would otherwise
     * leave the cluster with one voter for most of a run, where joint consensus decides
     * nothing its single voter does not */
    if (2u * (unsigned)__builtin_popcount(cur) <= (unsigned)__builtin_popcount(all) &&
        rng_ppm(&s->rng, 600000))
        pattern = 1;
    for (unsigned k = 0; k < 2; k++) {
        uint32_t in = want & cur, out = all & ~want;
        unsigned nin = (unsigned)__builtin_popcount(in), nout = (unsigned)__builtin_popcount(out);
        if ((pattern == 0 || pattern == 2) && nin > 1) { /* drop one of the voters */
            unsigned pick = (unsigned)rng_below(&s->rng, nin);
            for (uint32_t b = in; b; b &= b - 1)
                if (pick-- == 0)
                    want &= ~(b & -b);
        }
        if ((pattern == 0 || pattern == 1) && nout > 0) { /* add one of the others */
            unsigned pick = (unsigned)rng_below(&s->rng, nout);
            for (uint32_t b = out; b; b &= b - 1)
                if (pick-- == 0)
                    want |= b & -b;
        }
    }
    if (pattern == 3)
        want = (all & ~cur) ? all & ~cur : cur;
    if (pattern == 4)
        want = (uint32_t)rng_below(&s->rng, all) & all;
    return want ? want : cur;
}

/* Propose configuration t at l (raft_propose_members with flags) and check the API contracts of
 * an acceptance. Returns true if the core accepted it. */
static bool members_propose(struct sim *s, struct node *l, const struct raft_conf *t,
                            unsigned flags)
{
    const struct raft_conf *c = raft_conf(l->r);
    bool same = vset_of(t).voters == vset_of(c).voters &&
                id_bits(t->learners, t->learners_n) == id_bits(c->learners, c->learners_n);
    uint64_t index, tm;
    bool xfer = transfer_active(l), pending = change_pending(l);
    bool in_term = raft_term_at(l->r, raft_commit(l->r), &tm) && tm == raft_term(l->r);
    int rc = raft_propose_members(l->r, t, flags, &index);
    if (rc == 0)
        check_change_allowed(s, l, xfer, in_term, pending);
    if (rc == RAFT_EBUSY || rc == CS_EFULL || (rc == CS_EINVAL && same))
        return false;
    if (rc != 0) {
        fail(s, CK_API, "propose_members(voters %#x): %d", vset_of(t).voters, rc);
        return false;
    }
    check_leaders(s, l);
    s->st.confs++;
    bool joint = raft_conf_is_joint(raft_conf(l->r));
    s->st.joints += joint;
    trace(s, "leader %" PRIu64 " proposes voters %#x learners %#x at %" PRIu64 "%s", l->id,
          vset_of(t).voters, id_bits(t->learners, t->learners_n), index, joint ? " (joint)" : "");
    return true;
}

/* Propose a change of several voters at once at l (raft_propose_members, thesis §4.3): its
 * voters from pick_voters, each other node a learner or not a member at random (a voter turned
 * learner waits in learners_next while joint). Sometimes the joint path is asked for even for a
 * change of one voter. Returns true if the core accepted it. */
static bool client_members(struct sim *s, struct node *l)
{
    const struct raft_conf *c = raft_conf(l->r);
    uint32_t want =
        pick_voters(s, vset_of(c).voters, vset_of(c).voters | id_bits(c->learners, c->learners_n));
    struct raft_conf t;
    memset(&t, 0, sizeof(t));
    for (uint64_t id = 1; id <= s->n; id++) {
        if (want & (1u << id))
            t.voters[t.voters_n++] = id;
        else if (rng_ppm(&s->rng, 800000))
            t.learners[t.learners_n++] = id;
    }
    return members_propose(s, l, &t, rng_ppm(&s->rng, 400000) ? RAFT_CONF_JOINT : 0);
}

/* The voters (bits by node id) to cut leader l off from during its change: while joint, mostly
 * the voters of C_old that C_new drops (a majority of C_new alone may then decide, a majority of
 * both may not, thesis §4.3); while l is not a voter of C_new, mostly one voter of C_new (l may
 * then not count itself there, thesis §4.2.2); else a random subset of the others. */
static uint32_t change_cut_set(struct sim *s, const struct node *l)
{
    struct vset v = vset_of(raft_conf(l->r));
    uint32_t self = 1u << l->id, cut = 0;
    bool targeted = rng_ppm(&s->rng, 900000);
    if (targeted && v.old)
        cut = v.old & ~v.voters & ~self;
    if (targeted && !cut && !(v.voters & self) && v.voters) {
        unsigned pick = (unsigned)rng_below(&s->rng, (uint64_t)__builtin_popcount(v.voters));
        for (uint32_t b = v.voters; b; b &= b - 1)
            if (pick-- == 0)
                cut = b & -b;
    }
    if (!cut)
        for (unsigned k = 0; k < s->n; k++)
            if (rng_ppm(&s->rng, 500000))
                cut |= 1u << (k + 1);
    return cut & ~self;
}

/* While a leader's change is uncommitted (joint, or C_new after it), cut it off from some of the
 * others for a few election timeouts (change_cut_set), with probability p_ppm (per unit, and
 * again right after the core accepted a change): the decisions it can still make then tell a
 * quorum of one half from a quorum of both (thesis §4.3), and a removed leader counting itself
 * from one that does not (thesis §4.2.2). */
static void cut_during_change(struct sim *s, struct node *l, uint32_t p_ppm)
{
    if (!l->r || raft_role(l->r) != RAFT_LEADER || s->heal_at || !rng_ppm(&s->rng, p_ppm) ||
        !change_pending(l))
        return;
    unsigned a = (unsigned)(l->id - 1);
    uint32_t cut = change_cut_set(s, l);
    for (unsigned k = 0; k < s->n; k++)
        if (cut & (1u << (k + 1)))
            s->cut[a][k] = s->cut[k][a] = true;
    s->heal_at = s->now + SIM_TICK_UNITS * SIM_ELECTION_TICKS * (1 + rng_below(&s->rng, 3));
    trace(s, "leader %" PRIu64 " cut off from %#x during its change until t=%" PRIu64, l->id, cut,
          s->heal_at);
}

/* Propose a membership change at l: of type want (0: any). Returns the accepted change's type,
 * or 0. */
static int client_conf(struct sim *s, struct node *l, int want)
{
    const struct raft_conf *c = raft_conf(l->r);
    uint64_t target = 0;
    enum raft_conf_change type;
    /* any applicable single-server change, so that successive changes can move the voter set
     * two servers away from where it was (what the quorum-overlap check needs to see a leader
     * that does not wait for the previous change to commit) */
    if (want && conf_pick(s, l, want, &target)) {
        type = (enum raft_conf_change)want;
    } else if (want) {
        return 0;
    } else if (c->learners_n > 0 && rng_ppm(&s->rng, 700000)) {
        type = rng_ppm(&s->rng, 200000) ? RAFT_CC_REMOVE : RAFT_CC_PROMOTE;
        target = c->learners[rng_below(&s->rng, c->learners_n)];
    } else if ((unsigned)c->voters_n + c->learners_n < s->n && rng_ppm(&s->rng, 500000)) {
        type = RAFT_CC_ADD_LEARNER;
        for (uint64_t id = 1; id <= s->n && !target; id++)
            if (!raft_conf_is_voter(c, id) && !raft_conf_is_learner(c, id))
                target = id;
        if (!target)
            return 0; /* every node is a member (a voter of C_old only, while joint) */
    } else {
        type = RAFT_CC_REMOVE;
        /* seldom below a majority of the nodes: see pick_voters */
        if (c->voters_n <= 1 || (2u * c->voters_n <= s->n && rng_ppm(&s->rng, 700000)))
            return 0;
        target = c->voters[rng_below(&s->rng, c->voters_n)];
        if (target == l->id && rng_ppm(&s->rng, 300000))
            return 0; /* the leader often removes itself (thesis §4.2.2) */
    }
    uint64_t index, t;
    bool xfer = transfer_active(l), pending = change_pending(l);
    /* raft.h: no change before the leader committed an entry of its term (thesis §4.1) */
    bool in_term = raft_term_at(l->r, raft_commit(l->r), &t) && t == raft_term(l->r);
    int rc = raft_propose_conf(l->r, type, target, &index);
    if (rc == 0)
        check_change_allowed(s, l, xfer, in_term, pending);
    if (rc == RAFT_EBUSY || rc == CS_EFULL)
        return 0;
    if (rc != 0) {
        fail(s, CK_API, "propose_conf(%d, %" PRIu64 "): %d", (int)type, target, rc);
        return 0;
    }
    check_leaders(s, l);
    s->st.confs++;
    trace(s, "leader %" PRIu64 " proposes conf change %d of node %" PRIu64 " at %" PRIu64, l->id,
          (int)type, target, index);
    return (int)type;
}

/* thesis §4.1, §4.3: a second client's change right behind one the core just accepted at l. The
 * core must refuse it (RAFT_EBUSY) while the first is uncommitted or joint; client_conf and
 * client_members report an acceptance (check_change_allowed). */
static void change_behind(struct sim *s, struct node *l)
{
    if (!l->r || raft_role(l->r) != RAFT_LEADER || !rng_ppm(&s->rng, s->f.change_behind_ppm))
        return;
    if (rng_ppm(&s->rng, 500000))
        (void)client_members(s, l);
    else
        (void)client_conf(s, l, 0);
}

/* Thesis §4.1 (the raft-dev 2015 bug): leader l just proposed a change of this type. Isolate it
 * before the entry leaves (it stays in l's log only, uncommitted), and have the next leader
 * propose the opposite change as soon as the core lets it. From an even number of voters, the
 * two changes have disjoint majorities; only the rule "no change before the leader committed an
 * entry of its term" (whose commit retires the deposed change) keeps them apart. */
static void depose_after_conf(struct sim *s, struct node *l, int type)
{
    if (s->heal_at || s->chase_term)
        return; /* a partition is in progress: leave it alone */
    for (unsigned k = 0; k < s->n; k++) {
        s->cut[l->id - 1][k] = k != l->id - 1;
        s->cut[k][l->id - 1] = k != l->id - 1;
    }
    s->heal_at = s->now + SIM_TICK_UNITS * SIM_ELECTION_TICKS * (3 + rng_below(&s->rng, 4));
    s->chase_term = raft_term(l->r);
    s->chase_deposed = l->id;
    s->chase_type = type == RAFT_CC_REMOVE ? RAFT_CC_PROMOTE : RAFT_CC_REMOVE;
    s->st.deposed++;
    trace(s, "leader %" PRIu64 " isolated after its change until t=%" PRIu64, l->id, s->heal_at);
}

/* The next leader of the deposed-change scenario proposes its change (retried each time unit
 * while the core answers RAFT_EBUSY; given up at the heal). */
static void chase_conf(struct sim *s)
{
    if (!s->heal_at) {
        s->chase_term = 0;
        return;
    }
    for (unsigned i = 0; i < s->n; i++) {
        struct node *nd = &s->nodes[i];
        if (!nd->r || nd->id == s->chase_deposed || raft_role(nd->r) != RAFT_LEADER ||
            raft_term(nd->r) <= s->chase_term)
            continue;
        /* from an even number of voters any two voter changes of different servers can have
         * disjoint majorities: the opposite kind first, else the same kind */
        int other = s->chase_type == RAFT_CC_REMOVE ? RAFT_CC_PROMOTE : RAFT_CC_REMOVE;
        uint64_t target;
        int want = conf_pick(s, nd, s->chase_type, &target) ? s->chase_type : other;
        if (client_conf(s, nd, want) || !conf_pick(s, nd, want, &target))
            s->chase_term = 0;
        return;
    }
}

static void client_transfer(struct sim *s, struct node *l)
{
    const struct raft_conf *c = raft_conf(l->r);
    uint64_t target = c->voters[rng_below(&s->rng, c->voters_n)];
    if (target == l->id)
        return;
    int rc = raft_transfer_leader(l->r, target);
    if (rc != 0) {
        fail(s, CK_API, "transfer: %d", rc);
        return;
    }
    /* raft.h: a repeated request for the same target continues the transfer in progress */
    bool same = l->xfer_term == raft_term(l->r) && l->xfer_target == target &&
                l->xfer_ticks < SIM_ELECTION_TICKS;
    if (!same) {
        l->xfer_term = raft_term(l->r);
        l->xfer_target = target;
        l->xfer_ticks = 0;
    }
    s->st.transfers++;
    trace(s, "leader %" PRIu64 " transfers to %" PRIu64, l->id, target);
    /* a client's write right behind the request: raft.h refuses it while the transfer runs (an
     * empty one: never over the uncommitted-bytes cap, so nothing else refuses it) */
    if (transfer_active(l)) {
        uint8_t none = 0;
        uint64_t index;
        rc = raft_propose(l->r, &none, 0, &index);
        if (rc == 0)
            fail(s, CK_TRANSFER,
                 "leader %" PRIu64 " accepted a proposal right after a transfer to %" PRIu64
                 " began",
                 l->id, target);
        else if (rc != RAFT_EBUSY)
            fail(s, CK_API, "propose during a transfer: %d", rc);
    }
}

/* Does node nd's snapshot name every member of the configuration in force? A follower refuses
 * a snapshot that does not name it (raft.h), so a leader whose last snapshot predates a member's
 * (re)addition must take a fresh one before that member can catch up from it. */
static bool snapshot_names_members(const struct node *nd)
{
    const struct raft_conf *c = raft_conf(nd->r), *sc = &raft_snapshot(nd->r)->conf;
    for (unsigned k = 0; k < (unsigned)c->voters_n + c->learners_n; k++) {
        uint64_t id = k < c->voters_n ? c->voters[k] : c->learners[k - c->voters_n];
        if (!raft_conf_is_voter(sc, id) && !raft_conf_is_learner(sc, id))
            return false;
    }
    return true;
}

/* Compact node nd at its applied index: when it applied its first log entry and `more` after it
 * (more + 1 entries since its snapshot), or (a leader) when its snapshot misses a member (see
 * snapshot_names_members). */
static void compact(struct sim *s, struct node *nd, uint64_t more)
{
    uint64_t applied = raft_applied(nd->r), first = raft_first_index(nd->r);
    bool stale = raft_role(nd->r) == RAFT_LEADER && applied >= first && !snapshot_names_members(nd);
    if ((applied < first + more && !stale) || nd->sm_index != applied)
        return;
    uint64_t index = applied; /* the only state machine image at hand */
    uint8_t head[SM_SNAP_BYTES];
    memcpy(head, &nd->sm_index, 8);
    memcpy(head + 8, &nd->sm_hash, 8);
    memcpy(head + 16, &nd->sm_writes, 8);
    int rc = raft_compact(nd->r, index, s->img_bytes);
    if (rc != 0) {
        fail(s, CK_API, "compact at %" PRIu64 ": %d", index, rc);
        return;
    }
    img_keep(nd, index, head);
    struct rec *rec = rec_at(s, index);
    if (!rec->snap_hash)
        rec->snap_hash = img_hash(s, head); /* every node's image at index is this one */
    /* snapcrash: the process may die before its store compacts too (the log stays whole) */
    bool crash = rng_ppm(&s->rng, s->f.crash_after_snap_ppm);
    if (!crash || rng_ppm(&s->rng, 500000)) {
        uint8_t *img = malloc((size_t)s->img_bytes);
        if (!img)
            exit(2);
        img_read(head, 0, img, (uint32_t)s->img_bytes);
        rc = sim_store_compact(&nd->disk, raft_snapshot(nd->r), img);
        free(img);
        if (rc != 0)
            fail(s, CK_API, "store compact at %" PRIu64 ": %d", index, rc);
    }
    trace(s, "node %" PRIu64 " compacts to %" PRIu64, nd->id, index);
    if (crash)
        node_crash(s, nd, SIM_TICK_UNITS * (1 + rng_below(&s->rng, s->f.down_ticks_max)));
}

static void heal(struct sim *s)
{
    memset(s->cut, 0, sizeof(s->cut));
    s->heal_at = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Probes (struct probe)                                                                       */

#define SIM_PROBE_TRIES (10u * SIM_TICK_UNITS) /* units a kind waits for its moment */

/* A leader a probe can start from: it leads the highest term, committed an entry of its term,
 * has no transfer running, and is not stalled. (A change may be pending: a seed's random cuts
 * can hold one uncommitted for a long time.) */
static struct node *settled_leader(struct sim *s)
{
    struct node *l = leader(s);
    uint64_t t;
    if (!l || paused(s, l) || !(raft_term_at(l->r, raft_commit(l->r), &t) && t == raft_term(l->r)))
        return NULL;
    if (l->xfer_term == raft_term(l->r) && l->xfer_ticks <= SIM_ELECTION_TICKS + 1)
        return NULL;
    return l;
}

/* Bits (by node id) of the nodes that run. */
static uint32_t up_ids(const struct sim *s)
{
    uint32_t b = 0;
    for (unsigned k = 0; k < s->n; k++)
        if (s->nodes[k].r)
            b |= 1u << s->nodes[k].id;
    return b;
}

/* A random node id among the bits of set (0 if none). */
static uint64_t pick_id(struct sim *s, uint32_t set)
{
    unsigned pick = (unsigned)rng_below(&s->rng, (uint64_t)__builtin_popcount(set));
    for (uint32_t b = set; b; b &= b - 1)
        if (pick-- == 0)
            return (uint64_t)__builtin_ctz(b);
    return 0;
}

static void cut_both(struct sim *s, unsigned a, unsigned b)
{
    s->cut[a][b] = s->cut[b][a] = true;
}

/* A probe that needs at least `want` voters first has the learners promoted and the other
 * nodes added as learners (a client's changes; the probe starts once they committed and enough
 * vote). Never a node new to the configuration as a voter at once: the leader's snapshot may
 * leave it out (raft.h, raft_propose_members). While a learner is too far behind to be promoted
 * (RAFT_EBUSY), clients hold their writes for a few ticks: with one voter committing every
 * write at once, a learner a round trip behind would otherwise never catch up with the commit
 * index. Returns true if l has the voters already. */
static bool probe_voters(struct sim *s, struct node *l, unsigned want)
{
    const struct raft_conf *c = raft_conf(l->r);
    if (c->voters_n >= want)
        return true;
    if (change_pending(l))
        return false;
    struct raft_conf t;
    memset(&t, 0, sizeof(t));
    bool promote = c->learners_n > 0;
    for (uint64_t id = 1; id <= s->n; id++) {
        if (raft_conf_is_voter(c, id) || (promote && raft_conf_is_learner(c, id)))
            t.voters[t.voters_n++] = id;
        else
            t.learners[t.learners_n++] = id;
    }
    if (!members_propose(s, l, &t, 0) && promote)
        s->writes_held_until = s->now + 3 * SIM_TICK_UNITS; /* a learner behind: let it catch up */
    return false;
}

/* fig8: every node is cut off from every other; the leader writes entries only it holds, and
 * once they are on its disk it crashes. It comes back reaching only S, voters that with it make
 * a bare majority (never a majority without it): it wins a new term (its log is the longest) with
 * entries of its old term above its commit that S lacks. */
static bool fig8_start(struct sim *s, struct probe *p, struct node *l)
{
    if (!probe_voters(s, l, 2))
        return false;
    struct vset v = vset_of(raft_conf(l->r));
    uint32_t others = v.voters & up_ids(s) & ~(1u << l->id);
    unsigned need = (unsigned)__builtin_popcount(v.voters) / 2; /* a majority, less the leader */
    if (v.old || (unsigned)__builtin_popcount(others) < need)
        return false;
    p->set = 0;
    while ((unsigned)__builtin_popcount(p->set) < need)
        p->set |= 1u << pick_id(s, others & ~p->set);
    for (unsigned x = 0; x < s->n; x++)
        for (unsigned y = 0; y < s->n; y++)
            s->cut[x][y] = x != y;
    unsigned n = 0;
    while (n < 48 && write_one(s, l) == 0) /* up to the uncommitted-bytes cap */
        n++;
    p->until = s->now + 3 * SIM_TICK_UNITS;
    trace(s, "probe fig8: all cut off; leader %" PRIu64 " writes %u entries only it holds", l->id,
          n);
    return true;
}

static void fig8_step(struct sim *s, struct probe *p)
{
    struct node *l = &s->nodes[p->l];
    if (p->stage == 0) {
        bool saved = l->r && sim_store_durable_last(&l->disk) >= raft_last_index(l->r);
        if (!saved && s->now < p->until)
            return;
        if (l->r)
            node_crash(s, l, SIM_TICK_UNITS * (1 + rng_below(&s->rng, 3)));
        for (unsigned k = 0; k < s->n; k++)
            if (p->set & (1u << s->nodes[k].id))
                s->cut[p->l][k] = s->cut[k][p->l] = false;
        p->stage = 1;
        trace(s, "probe fig8: leader %" PRIu64 " crashed; it will reach %#x only", l->id, p->set);
        return;
    }
    /* over once a new leader committed in its term, or led for 5 ticks (its first appends to
     * the others are what the probe is for) */
    for (unsigned k = 0; k < s->n; k++) {
        const struct node *nd = &s->nodes[k];
        uint64_t t;
        if (!nd->r || raft_role(nd->r) != RAFT_LEADER || raft_term(nd->r) <= p->term)
            continue;
        if (p->stage == 1) {
            p->stage = 2;
            p->until = s->now + 5 * SIM_TICK_UNITS;
        }
        if (s->now >= p->until ||
            (raft_term_at(nd->r, raft_commit(nd->r), &t) && t == raft_term(nd->r))) {
            heal(s);
            trace(s, "probe fig8: node %" PRIu64 " leads term %" PRIu64 "; heal", nd->id,
                  raft_term(nd->r));
            return;
        }
    }
}

/* joint: the voters shrink to the leader and the learners, through C_old,new; the leader is cut
 * off from the voters it drops. */
static bool joint_start(struct sim *s, struct probe *p, struct node *l)
{
    if (change_pending(l) || !probe_voters(s, l, 2))
        return false;
    const struct raft_conf *c = raft_conf(l->r);
    uint32_t old = vset_of(c).voters;
    struct raft_conf t;
    for (unsigned pass = 0; pass < 2; pass++) {
        memset(&t, 0, sizeof(t));
        t.voters[t.voters_n++] = l->id;
        for (unsigned i = 0; pass == 0 && i < c->learners_n; i++)
            t.voters[t.voters_n++] = c->learners[i];
        for (unsigned i = 0; i < c->voters_n; i++)
            if (c->voters[i] != l->id)
                t.learners[t.learners_n++] = c->voters[i];
        if (members_propose(s, l, &t, RAFT_CONF_JOINT))
            break;
        if (pass == 1 || !c->learners_n) /* a learner behind: the leader alone then */
            return false;
    }
    uint32_t dropped = old & ~vset_of(&t).voters;
    for (unsigned k = 0; k < s->n; k++)
        if (dropped & (1u << s->nodes[k].id))
            cut_both(s, p->l, k);
    s->heal_at = s->now + SIM_TICK_UNITS * (5 + rng_below(&s->rng, 6));
    trace(s, "probe joint: leader %" PRIu64 " keeps voters %#x, cut off from %#x until t=%" PRIu64,
          l->id, vset_of(&t).voters, dropped, s->heal_at);
    return true;
}

/* removal: the leader leaves the voters and reaches one voter fewer than a majority of C_new. */
static bool removal_start(struct sim *s, struct probe *p, struct node *l)
{
    if (change_pending(l) || !probe_voters(s, l, 2))
        return false;
    const struct raft_conf *c = raft_conf(l->r);
    struct raft_conf t;
    memset(&t, 0, sizeof(t));
    for (unsigned i = 0; i < c->voters_n; i++)
        if (c->voters[i] != l->id)
            t.voters[t.voters_n++] = c->voters[i];
    memcpy(t.learners, c->learners, sizeof(t.learners));
    t.learners_n = c->learners_n;
    t.learners[t.learners_n++] = l->id;
    if (!members_propose(s, l, &t, 0))
        return false;
    uint32_t left = vset_of(&t).voters, cut = 0;
    unsigned q = t.voters_n / 2u + 1u; /* the leader may reach q - 1 of them */
    while ((unsigned)__builtin_popcount(left & ~cut) > q - 1)
        cut |= 1u << pick_id(s, left & ~cut);
    for (unsigned k = 0; k < s->n; k++)
        if (cut & (1u << s->nodes[k].id))
            cut_both(s, p->l, k);
    s->heal_at = s->now + SIM_TICK_UNITS * (5 + rng_below(&s->rng, 6));
    trace(s,
          "probe removal: leader %" PRIu64 " leaves voters %#x, cut off from %#x until t=%" PRIu64,
          l->id, left, cut, s->heal_at);
    return true;
}

/* snap: member A is cut off while the leader goes on (it keeps a quorum without A). */
static bool snap_start(struct sim *s, struct probe *p, struct node *l)
{
    const struct raft_conf *c = raft_conf(l->r);
    uint32_t members = vset_of(c).voters | id_bits(c->learners, c->learners_n);
    uint32_t cand = members & up_ids(s) & ~(1u << l->id);
    if (s->img_bytes <= s->chunk_bytes || !cand)
        return false; /* a transfer of one chunk cannot break half-way */
    uint64_t a = pick_id(s, cand);
    if (!vset_quorum(vset_of(c), up_ids(s) & ~(1u << a)))
        return false;
    p->a = (unsigned)(a - 1);
    for (unsigned k = 0; k < s->n; k++)
        if (k != p->a)
            cut_both(s, p->a, k);
    for (unsigned k = 0; k < 4; k++) /* entries A will miss */
        (void)write_one(s, l);
    p->until = s->now + SIM_TICK_UNITS * SIM_ELECTION_TICKS; /* A campaigns after that */
    trace(s, "probe snap: node %" PRIu64 " cut off", a);
    return true;
}

/* The snap probe's stream to A broke: the leader hears of it (raft_report_snapshot) and
 * compacts again, so that its next transfer carries another snapshot. Then the probe lets that
 * one run (stage 3), or breaks the next one too if the snapshot did not move (at most three). */
static void snap_report(struct sim *s, struct probe *p)
{
    struct node *l = &s->nodes[p->l];
    p->stage = p->breaks >= 3 ? 3 : 1;
    if (!l->r || raft_role(l->r) != RAFT_LEADER)
        return;
    raft_report_snapshot(l->r, s->nodes[p->a].id, false);
    uint64_t before = raft_snapshot(l->r)->index;
    compact(s, l, 0); /* may crash it (snapcrash) */
    if (l->r && raft_snapshot(l->r)->index != before)
        p->stage = 3;
    p->snap_index = l->r ? raft_snapshot(l->r)->index : 0;
    trace(s, "probe snap: leader %" PRIu64 " told the transfer broke; snapshot %" PRIu64, l->id,
          p->snap_index);
}

static void snap_step(struct sim *s, struct probe *p)
{
    struct node *l = &s->nodes[p->l], *a = &s->nodes[p->a];
    if (p->stage < 3 && (!l->r || raft_role(l->r) != RAFT_LEADER || raft_term(l->r) != p->term)) {
        heal(s); /* the leader fell: this probe is over, the next one may find its moment */
        trace(s, "probe snap: leader %" PRIu64 " fell; heal", l->id);
        return;
    }
    /* A stays cut off until the leader applied a few entries past A's log (at least 3 ticks,
     * less than an election timeout) */
    if (p->stage == 0 && (s->now + 7 * SIM_TICK_UNITS >= p->until || !a->r) &&
        (raft_applied(l->r) >= sim_store_durable_last(&a->disk) + 3 || s->now >= p->until)) {
        /* the leader compacts past what A holds, takes one more write (something newer to
         * compact to when the transfer breaks) and A comes back */
        compact(s, l, 0);
        if (l->r)
            (void)write_one(s, l);
        for (unsigned k = 0; k < s->n; k++)
            s->cut[p->a][k] = s->cut[k][p->a] = false;
        p->stage = 1; /* node_ready breaks the next transfer to A (probe_breaks) */
        trace(s, "probe snap: node %" PRIu64 " back; its next transfer breaks", a->id);
    } else if (p->stage == 2 && s->now >= p->until) {
        snap_report(s, p); /* the chunk that left before the break was lost */
    } else if (p->stage == 3 && (!l->r || (a->r && a->sm_index >= p->snap_index) ||
                                 (!raft_conf_is_voter(raft_conf(l->r), a->id) &&
                                  !raft_conf_is_learner(raft_conf(l->r), a->id)))) {
        heal(s);
        trace(s, "probe snap: node %" PRIu64 " caught up; heal", a->id);
    }
}

/* node_ready, as leader l's message m is about to leave: is it a chunk the snap probe keeps
 * off the wire? The first chunk (not the last) of the next transfer to A leaves; the stream then
 * breaks: every later chunk of that transfer is lost. The leader hears of the break only once
 * the chunk that left reached A (probe_chunk_arrived), or after SIM_TICK_UNITS * 3 (it was lost),
 * so that A holds part of one transfer when the chunks of the next arrive. */
static bool probe_breaks(struct sim *s, unsigned l, const struct raft_msg *m)
{
    struct probe *p = &s->probe;
    if (!p->active || p->kind != PROBE_SNAP || l != p->l || m->type != RAFT_MSG_SNAP ||
        m->to != s->nodes[p->a].id)
        return false;
    if (p->stage == 2)
        return m->chunk.transfer == p->xfer;
    if (p->stage != 1 || m->chunk.last)
        return false;
    p->stage = 2;
    p->breaks++;
    p->xfer = m->chunk.transfer;
    p->until = s->now + 3 * SIM_TICK_UNITS;
    trace(s, "probe snap: transfer of %" PRIu64 " to node %" PRIu64 " breaks after offset %" PRIu64,
          m->snapshot.index, m->to, m->chunk.offset);
    return false; /* this one leaves */
}

/* deliver, after a chunk m reached its node: the snap probe's last chunk before the break. */
static void probe_chunk_arrived(struct sim *s, const struct raft_msg *m)
{
    struct probe *p = &s->probe;
    if (p->active && p->kind == PROBE_SNAP && p->stage == 2 && m->chunk.transfer == p->xfer &&
        m->to == s->nodes[p->a].id && m->from == s->nodes[p->l].id)
        snap_report(s, p);
}

/* Is the seed's first round of probes not over yet? Partitions, one-way cuts and lagging nodes
 * do not begin then, except in the partition and chaos classes (they would hold a probe's
 * moment off for tens of ticks). */
static bool probe_first_round(const struct sim *s)
{
    return s->cls != CL_PARTITION && s->cls != CL_CHAOS && s->probe_turn < PROBE_KINDS;
}

/* Start the next probe in a quiet moment, step the one running; a heal (its deadline, or its own
 * end) ends it. A kind whose moment does not come within SIM_PROBE_TRIES gives way to the next. */
static void probe_step(struct sim *s)
{
    struct probe *p = &s->probe;
    if (p->active && !s->heal_at) {
        p->active = false;
        s->probe_at = s->now + SIM_TICK_UNITS * (2 + rng_below(&s->rng, 4));
    }
    if (p->active) {
        if (p->kind == PROBE_FIG8)
            fig8_step(s, p);
        else if (p->kind == PROBE_SNAP)
            snap_step(s, p);
        return;
    }
    if (s->now < s->probe_at)
        return;
    if (s->heal_at) { /* another fault's cut: the kind's tries begin after it */
        s->probe_at = s->now;
        return;
    }
    struct node *l = settled_leader(s);
    if (!l) { /* no leader to start from: the kind's tries begin once there is one */
        s->probe_at = s->now;
        return;
    }
    if (s->now >= s->probe_at + SIM_PROBE_TRIES) {
        s->probe_turn++;
        s->probe_at = s->now;
    }
    memset(p, 0, sizeof(*p));
    p->kind = s->probe_turn % PROBE_KINDS;
    p->l = (unsigned)(l->id - 1);
    p->term = raft_term(l->r);
    s->heal_at = s->now + SIM_TICK_UNITS * 4 * SIM_ELECTION_TICKS; /* the probe's deadline */
    bool started = p->kind == PROBE_FIG8      ? fig8_start(s, p, l)
                   : p->kind == PROBE_JOINT   ? joint_start(s, p, l)
                   : p->kind == PROBE_REMOVAL ? removal_start(s, p, l)
                                              : snap_start(s, p, l);
    if (!started) {
        heal(s);
        return;
    }
    p->active = true;
    s->probe_turn++;
    s->st.probes++;
}

static void faults_step(struct sim *s)
{
    if (s->heal_at && s->now >= s->heal_at) {
        heal(s);
        trace(s, "network heals");
    }
    probe_step(s);
    if (!s->heal_at && !probe_first_round(s) && rng_ppm(&s->rng, s->f.partition_ppm)) {
        uint32_t side = (uint32_t)rng_below(&s->rng, (1u << s->n) - 2) + 1;
        for (unsigned a = 0; a < s->n; a++)
            for (unsigned b = 0; b < s->n; b++)
                s->cut[a][b] = ((side >> a) & 1) != ((side >> b) & 1);
        s->heal_at = s->now + SIM_TICK_UNITS * (5 + rng_below(&s->rng, 60));
        trace(s, "partition %#x until t=%" PRIu64, side, s->heal_at);
    }
    if (!s->heal_at && !probe_first_round(s) && rng_ppm(&s->rng, s->f.oneway_ppm)) {
        unsigned a = (unsigned)rng_below(&s->rng, s->n), b = (unsigned)rng_below(&s->rng, s->n);
        if (a != b) {
            s->cut[a][b] = true;
            if (rng_ppm(&s->rng, 500000)) /* isolate a's outbound entirely */
                for (unsigned k = 0; k < s->n; k++)
                    s->cut[a][k] = k != a;
            s->heal_at = s->now + SIM_TICK_UNITS * (5 + rng_below(&s->rng, 60));
            trace(s, "one-way cut from node %u (to %u) until t=%" PRIu64, a + 1, b + 1, s->heal_at);
        }
    }
    if (!s->heal_at && !probe_first_round(s) && rng_ppm(&s->rng, s->f.lag_ppm)) {
        unsigned a = (unsigned)rng_below(&s->rng, s->n);
        for (unsigned k = 0; k < s->n; k++)
            s->cut[a][k] = s->cut[k][a] = k != a;
        s->heal_at = s->now + SIM_TICK_UNITS * SIM_ELECTION_TICKS * (3 + rng_below(&s->rng, 6));
        trace(s, "node %u cut off (to lag behind) until t=%" PRIu64, a + 1, s->heal_at);
    }
    if (rng_ppm(&s->rng, s->f.replay_ppm))
        replay_old_frame(s);
    for (unsigned i = 0; i < s->n; i++) {
        struct node *nd = &s->nodes[i];
        if (rng_ppm(&s->rng, s->f.drift_ppm)) {
            /* the drift class: this node's clock now runs at another rate (2.5x slower to 2x
             * faster than nominal), as under CPU throttling, NTP slewing or a VM steal */
            nd->tick_units = 5 + (unsigned)rng_below(&s->rng, 21);
            s->st.drifts++;
        }
        if (!nd->r && s->now >= nd->down_until) {
            node_start(s, nd);
            trace(s, "node %" PRIu64 " restarts (term %" PRIu64 ", last %" PRIu64 ")", nd->id,
                  nd->r ? raft_term(nd->r) : 0, sim_store_last(&nd->disk));
        } else if (nd->r && !paused(s, nd) &&
                   (rng_ppm(&s->rng, s->f.pause_ppm) ||
                    (raft_role(nd->r) == RAFT_LEADER && rng_ppm(&s->rng, s->f.leader_pause_ppm)))) {
            nd->paused_until = s->now + SIM_TICK_UNITS * (1 + rng_below(&s->rng, 30));
            s->st.stalls++;
            trace(s, "node %" PRIu64 " stalls until t=%" PRIu64 " (%s)", nd->id, nd->paused_until,
                  raft_role(nd->r) == RAFT_LEADER ? "leader" : "not leader");
        } else if (nd->r &&
                   (rng_ppm(&s->rng, s->f.crash_ppm) ||
                    (raft_role(nd->r) == RAFT_LEADER && rng_ppm(&s->rng, s->f.leader_crash_ppm)))) {
            node_crash(s, nd, SIM_TICK_UNITS * (1 + rng_below(&s->rng, s->f.down_ticks_max)));
        }
    }
}

/* A random node among those that believe they lead (a deposed leader may not know yet: clients
 * talking to it are how stale reads would show). */
static struct node *some_leader(struct sim *s)
{
    struct node *c[SIM_NODES_MAX];
    unsigned n = 0;
    for (unsigned i = 0; i < s->n; i++)
        if (s->nodes[i].r && !paused(s, &s->nodes[i]) && raft_role(s->nodes[i].r) == RAFT_LEADER)
            c[n++] = &s->nodes[i];
    return n ? c[rng_below(&s->rng, n)] : NULL;
}

static void clients_step(struct sim *s, bool faults)
{
    struct node *l = some_leader(s);
    if (!l)
        return;
    if (rng_ppm(&s->rng, 150000))
        client_write(s, l);
    if (rng_ppm(&s->rng, 60000))
        client_read(s, l);
    if (rng_ppm(&s->rng, 40000)) { /* at any node: followers forward (thesis §6.4.1) */
        struct node *any = &s->nodes[rng_below(&s->rng, s->n)];
        if (any->r && !paused(s, any))
            client_read(s, any);
    }
    if (raft_role(l->r) == RAFT_LEADER && !snapshot_names_members(l))
        compact(s, l, 8); /* the caller's duty: a snapshot the new member will accept */
    if (!faults || !l->r)
        return; /* (snapcrash: l may have crashed right after compacting) */
    if (s->chase_term)
        chase_conf(s);
    for (unsigned i = 0; i < s->n; i++) {
        /* confchase: a leader that has not committed in its term yet asks for a change at once
         * (the core answers RAFT_EBUSY until its empty entry commits, thesis §4.1) */
        struct node *nd = &s->nodes[i];
        uint64_t t;
        if (nd->r && !paused(s, nd) && raft_role(nd->r) == RAFT_LEADER &&
            !(raft_term_at(nd->r, raft_commit(nd->r), &t) && t == raft_term(nd->r)) &&
            rng_ppm(&s->rng, s->f.fresh_conf_ppm)) {
            int type = client_conf(s, nd, 0);
            if (type)
                change_behind(s, nd);
            if (type && type != RAFT_CC_ADD_LEARNER && rng_ppm(&s->rng, s->f.depose_conf_ppm))
                depose_after_conf(s, nd, type);
        }
    }
    if (s->probe.active)
        return; /* a probe's schedule: no client changes, transfers or compactions meanwhile */
    if (rng_ppm(&s->rng, s->f.conf_ppm)) {
        int type = 0;
        if (rng_ppm(&s->rng, s->f.members_ppm)) {
            type = client_members(s, l) ? -1 : 0;
        } else {
            type = client_conf(s, l, 0);
            if (type && type != RAFT_CC_ADD_LEARNER && rng_ppm(&s->rng, s->f.depose_conf_ppm))
                depose_after_conf(s, l, type);
        }
        if (type) {
            change_behind(s, l);
            cut_during_change(s, l, s->f.change_cut_now_ppm);
        }
    }
    cut_during_change(s, l, s->f.change_cut_ppm);
    if (rng_ppm(&s->rng, s->f.transfer_ppm))
        client_transfer(s, l);
    for (unsigned i = 0; i < s->n; i++)
        if (s->nodes[i].r && !paused(s, &s->nodes[i]) && rng_ppm(&s->rng, s->f.compact_ppm))
            compact(s, &s->nodes[i], 8);
}

/* One time unit: deliveries, ticks, client calls, ready batches. */
static void unit_step(struct sim *s, bool faults)
{
    if (faults)
        faults_step(s);
    /* clients act before or after this unit's deliveries: a request may reach a node before
     * the messages that would tell it it was deposed */
    bool clients_first = rng_ppm(&s->rng, 500000);
    if (clients_first)
        clients_step(s, faults);
    while (s->net_n > 0 && s->net[0].at <= s->now) {
        struct net_msg m = net_pop(s);
        const struct node *to = &s->nodes[m.to];
        if (to->r && paused(s, to)) {
            /* waits in the socket buffer, drained over a few units after the stall */
            m.at = to->paused_until + rng_below(&s->rng, 2 * SIM_TICK_UNITS);
            m.seq = rng_next(&s->rng);
            net_push(s, m);
            continue;
        }
        deliver(s, &m);
        free(m.buf);
    }
    for (unsigned i = 0; i < s->n; i++) {
        struct node *nd = &s->nodes[i];
        if (nd->r && !paused(s, nd) && (s->now + nd->phase) % nd->tick_units == 0) {
            bool xfer = nd->xfer_term && raft_role(nd->r) == RAFT_LEADER &&
                        raft_term(nd->r) == nd->xfer_term;
            raft_tick(nd->r);
            nd->xfer_ticks += xfer;
            check_leaders(s, nd);
        }
    }
    if (!clients_first)
        clients_step(s, faults);
    for (unsigned i = 0; i < s->n; i++) {
        struct node *nd = &s->nodes[i];
        if (!nd->r || paused(s, nd) || !raft_has_ready(nd->r))
            continue;
        if (faults && nd->disk_wait < nd->disk_delay) {
            nd->disk_wait++;
            continue;
        }
        nd->disk_wait = 0;
        nd->disk_delay = faults ? (unsigned)rng_below(&s->rng, s->f.disk_delay_max + 1) : 0;
        node_ready(s, i);
        /* a backlog of committed entries (a restart, cfg.committed_bytes_max) drains over a few
         * batches in the same unit, as a server runs batches back to back */
        for (unsigned k = 0;
             k < SIM_READY_BURST && nd->r && raft_applied(nd->r) < raft_commit(nd->r); k++)
            node_ready(s, i);
    }
    s->now++;
}

/* ------------------------------------------------------------------------------------------ */
/* Scenarios                                                                                   */

/* The fault mix of one seed: its class (seed % SIM_CLASSES) and draws from the seed's PRNG, so
 * the same seed always gets the same mix. */
static void pick_faults(struct sim *s)
{
    struct faults f = {.delay_max = 2 * SIM_TICK_UNITS, .loss_ppm = 10000, .down_ticks_max = 40};
    bool all = s->cls == CL_CHAOS;
    if (s->cls == CL_LOSSY || all) {
        f.loss_ppm = 50000 + (uint32_t)rng_below(&s->rng, 200000);
        f.dup_ppm = 50000;
        f.long_delay_ppm = 20000;
        f.flip_ppm = 5000;
        f.delay_max = 4 * SIM_TICK_UNITS;
    }
    if (s->cls == CL_PARTITION || all) {
        f.partition_ppm = 1000 + (uint32_t)rng_below(&s->rng, 8000);
        f.pause_ppm = (uint32_t)rng_below(&s->rng, 1000);
        f.leader_pause_ppm = (uint32_t)rng_below(&s->rng, 3000);
        f.oneway_ppm = 1000 + (uint32_t)rng_below(&s->rng, 4000);
    }
    if (s->cls == CL_CRASH || all) {
        f.crash_ppm = 200 + (uint32_t)rng_below(&s->rng, 1500);
        f.leader_crash_ppm = (uint32_t)rng_below(&s->rng, 4000);
        f.crash_after_ack_ppm = (uint32_t)rng_below(&s->rng, 30000);
        f.disk_delay_max = (unsigned)rng_below(&s->rng, 3 * SIM_TICK_UNITS);
    }
    if (s->cls == CL_CHURN || all) {
        f.conf_ppm = 20000;
        f.depose_conf_ppm = 300000;
        f.transfer_ppm = 2000;
        f.compact_ppm = 5000;
        f.disk_delay_max = f.disk_delay_max ? f.disk_delay_max : SIM_TICK_UNITS;
    }
    if (s->cls == CL_DISKFAULT || all) {
        /* failed writes, failed fsyncs and torn frames; each stops its node (raft.h) */
        f.disk_eio_ppm = 2000 + (uint32_t)rng_below(&s->rng, 8000);
        f.disk_fsync_ppm = 2000 + (uint32_t)rng_below(&s->rng, 8000);
        f.disk_torn_ppm = 1000 + (uint32_t)rng_below(&s->rng, 5000);
        f.down_ticks_max = 5 + (unsigned)rng_below(&s->rng, 20);
        f.disk_delay_max = (unsigned)rng_below(&s->rng, 2 * SIM_TICK_UNITS);
    }
    if (s->cls == CL_REPLAY || all) {
        /* frames from far back (at least SIM_REPLAY_AGE_MIN units) delivered again */
        f.archive_ppm = 20000;
        f.replay_ppm = 100000 + (uint32_t)rng_below(&s->rng, 400000);
        f.leader_crash_ppm = f.leader_crash_ppm ? f.leader_crash_ppm : 300;
        f.leader_pause_ppm = f.leader_pause_ppm ? f.leader_pause_ppm : 300;
    }
    if (s->cls == CL_SNAPCRASH || all) {
        /* nodes compact all the time and crash around compactions and installs; loss makes
         * followers fall behind the leader's snapshot */
        f.compact_ppm = 100000;
        f.crash_after_snap_ppm = 50000 + (uint32_t)rng_below(&s->rng, 200000);
        f.crash_ppm = f.crash_ppm ? f.crash_ppm : 300 + (uint32_t)rng_below(&s->rng, 700);
        f.loss_ppm = f.loss_ppm > 50000 ? f.loss_ppm : 50000 + (uint32_t)rng_below(&s->rng, 100000);
        f.down_ticks_max = 5 + (unsigned)rng_below(&s->rng, 60);
        f.disk_delay_max = (unsigned)rng_below(&s->rng, SIM_TICK_UNITS);
    }
    if (s->cls == CL_LONG) {
        /* SIM_LONG_FACTOR times the steps; leaders fall now and then: tens of elections */
        f.leader_crash_ppm = 400 + (uint32_t)rng_below(&s->rng, 800);
        f.leader_pause_ppm = (uint32_t)rng_below(&s->rng, 500);
        f.crash_ppm = (uint32_t)rng_below(&s->rng, 100);
        f.compact_ppm = 2000;
        f.down_ticks_max = 5 + (unsigned)rng_below(&s->rng, 30);
    }
    if (s->cls == CL_DRIFT || all) {
        /* clock rates change during the run (see faults_step) */
        f.drift_ppm = 1000 + (uint32_t)rng_below(&s->rng, 5000);
        f.partition_ppm = f.partition_ppm ? f.partition_ppm : 1000;
        f.leader_pause_ppm = f.leader_pause_ppm ? f.leader_pause_ppm : 1000;
    }
    if (s->cls == CL_CONFCHASE) {
        /* every new leader asks for a change before it committed in its term; accepted changes
         * often lose their leader at once (thesis §4.1) */
        f.fresh_conf_ppm = 500000;
        f.conf_ppm = 30000;
        f.depose_conf_ppm = 500000;
        f.leader_crash_ppm = 1000;
        f.compact_ppm = 2000;
    }
    if (s->cls == CL_JOINT) {
        /* changes of several voters at once (thesis §4.3): replace two, grow, shrink, swap all;
         * leaders cut off from some of the others while a change is uncommitted, crashes */
        f.conf_ppm = 40000;
        f.members_ppm = 850000;
        f.change_cut_ppm = 30000;
        f.leader_crash_ppm = 500;
        f.crash_ppm = 200;
        f.compact_ppm = 3000;
        f.loss_ppm = 20000;
    }
    if (s->cls == CL_CHURN || s->cls == CL_CHAOS || s->cls == CL_CONFCHASE)
        f.members_ppm = 300000; /* some of their changes are of several voters */
    if (s->cls == CL_CALM)
        f.compact_ppm = 1000;
    /* the seed's mix on top of its class: most seeds also have every new leader ask for a
     * change before its first commit (the core must refuse, thesis §4.1: harmless when it
     * does); every seed gets light disk faults (a run sees a few failed, unsynced or torn saves,
     * each stopping its node: the io-stop and atomic-batch checks need them in most runs), some
     * get drifting clocks */
    if (!f.fresh_conf_ppm && rng_ppm(&s->rng, 800000))
        f.fresh_conf_ppm = 300000;
    if (!f.disk_eio_ppm) {
        f.disk_eio_ppm = 1000;
        f.disk_fsync_ppm = 1000;
        f.disk_torn_ppm = 800;
    }
    if (!f.drift_ppm && rng_ppm(&s->rng, 200000))
        f.drift_ppm = 500;
    /* every seed also gets a few leadership transfers (each with a write right behind it), old
     * frames delivered again some tens of ticks later, and some changes of several voters */
    if (!f.transfer_ppm)
        f.transfer_ppm = 3000;
    s->replay_age = SIM_REPLAY_AGE_MIN;
    if (!f.replay_ppm) {
        f.archive_ppm = 30000;
        f.replay_ppm = 150000;
        s->replay_age = 30 * SIM_TICK_UNITS;
    }
    /* every seed gets membership changes, most of several voters (thesis §4.3), a second
     * change right behind an accepted one now and then, and snapshot transfers that break
     * mid-way while the leader compacts */
    if (!f.conf_ppm) {
        f.conf_ppm = 12000;
        f.members_ppm = 700000;
        f.change_cut_ppm = 20000;
        /* a member added back far behind catches up from a snapshot, not entry by entry */
        f.compact_ppm = f.compact_ppm ? f.compact_ppm : 2000;
    }
    f.change_behind_ppm = 500000;
    f.change_cut_now_ppm = 700000;
    f.snap_reset_ppm = 80000;
    f.lag_ppm = 1000;
    if (s->cls == CL_LEADERFALL) {
        /* leaders fall soon after they append: the histories of §5.4.2 / Figure 8, where
         * entries of old terms sit on a minority while terms move on */
        f.leader_crash_ppm = 5000 + (uint32_t)rng_below(&s->rng, 30000);
        f.crash_after_ack_ppm = (uint32_t)rng_below(&s->rng, 20000);
        f.crash_ppm = 200;
        f.down_ticks_max = 1 + (unsigned)rng_below(&s->rng, 10);
        f.loss_ppm = (uint32_t)rng_below(&s->rng, 200000);
        f.disk_delay_max = (unsigned)rng_below(&s->rng, SIM_TICK_UNITS);
        f.oneway_ppm = 2000;
    }
    s->f = f;
}

static void sim_free(struct sim *s)
{
    for (unsigned i = 0; i < s->n; i++) {
        raft_free(s->nodes[i].r);
        sim_store_destroy(&s->nodes[i].disk);
    }
    for (size_t i = 0; i < s->net_n; i++)
        free(s->net[i].buf);
    for (unsigned i = 0; i < SIM_ARCHIVE_MAX; i++)
        free(s->archive[i].buf);
    free(s->net);
    free(s->leader_of_term);
    free(s->recs);
    free(s->lm);
    free(s->confs);
    free(s->votes);
}

/* Has every member of the leader's configuration (voters and learners) applied index? */
static bool members_applied(struct sim *s, struct node *l, uint64_t index)
{
    const struct raft_conf *c = raft_conf(l->r);
    for (unsigned i = 0; i < s->n; i++) {
        const struct node *nd = &s->nodes[i];
        bool member = raft_conf_is_voter(c, nd->id) || raft_conf_is_learner(c, nd->id);
        if (member && nd->sm_index < index)
            return false;
    }
    return true;
}

static bool liveness(struct sim *s)
{
    for (unsigned i = 0; i < s->n; i++)
        if (!s->nodes[i].r) {
            node_start(s, &s->nodes[i]);
            trace(s, "node %" PRIu64 " restarts for the heal", s->nodes[i].id);
        }
    heal(s);
    s->probe.active = false;
    memset(s->cut_until, 0, sizeof(s->cut_until));
    /* the heal also ends clock drift (each clock back to its initial rate): liveness is owed
     * under bounded drift, not to a cluster where a server that missed its removal ticks 2.5
     * times faster than the leader and, without PreVote, raises its term again before the
     * leader can catch it up (thesis §4.2.3) */
    for (unsigned i = 0; i < s->n; i++) {
        s->nodes[i].paused_until = 0;
        s->nodes[i].tick_units = s->nodes[i].tick_units_base;
    }
    s->f.loss_ppm = 0;
    s->f.crash_after_ack_ppm = 0;
    s->f.dup_ppm = 0;
    s->f.long_delay_ppm = 0;
    s->f.flip_ppm = 0;
    s->f.replay_ppm = 0;
    s->f.disk_eio_ppm = 0;
    s->f.disk_fsync_ppm = 0;
    s->f.disk_torn_ppm = 0;
    s->f.crash_after_snap_ppm = 0;
    s->f.snap_reset_ppm = 0;
    s->f.delay_max = SIM_TICK_UNITS;
    trace(s, "heal: all up, network whole");
    uint64_t want = 0, deadline = s->now + (uint64_t)SIM_LIVENESS_TICKS * SIM_TICK_UNITS;
    struct node *prop = NULL;
    uint64_t prop_term = 0;
    bool committed = false;
    while (s->now < deadline && !s->failed) {
        unit_step(s, false);
        struct node *l = leader(s);
        if (!l)
            continue;
        if (!want || prop != l || raft_term(l->r) != prop_term) {
            uint8_t data[8] = {'l', 'i', 'v', 'e'};
            bool xfer = transfer_active(l);
            if (raft_propose(l->r, data, sizeof(data), &want) == 0) {
                if (xfer)
                    fail(s, CK_TRANSFER, "leader %" PRIu64 " accepted a proposal during a transfer",
                         l->id);
                prop = l;
                prop_term = raft_term(l->r);
            }
            continue;
        }
        uint64_t t;
        if (!committed && l->sm_index >= want && raft_term_at(l->r, want, &t) && t == prop_term) {
            trace(s, "liveness: leader %" PRIu64 " committed %" PRIu64, l->id, want);
            committed = true;
        }
        if (committed && members_applied(s, l, want))
            return true;
    }
    for (unsigned i = 0; i < s->n && !s->failed; i++) {
        const struct node *nd = &s->nodes[i];
        trace(s,
              "node %" PRIu64 ": role %d term %" PRIu64 " commit %" PRIu64 " applied %" PRIu64
              " last %" PRIu64 " snapshot %" PRIu64 " voters %#x learners %#x",
              nd->id, (int)raft_role(nd->r), raft_term(nd->r), raft_commit(nd->r), nd->sm_index,
              raft_last_index(nd->r), raft_snapshot(nd->r)->index, vset_of(raft_conf(nd->r)).voters,
              id_bits(raft_conf(nd->r)->learners, raft_conf(nd->r)->learners_n));
    }
    if (!s->failed)
        fail(s, CK_LIVENESS, "liveness: %s within %u ticks after the heal",
             committed ? "not every member applied the commit" : "no commit", SIM_LIVENESS_TICKS);
    return false;
}

static void stats_add(struct stats *to, const struct stats *one)
{
    to->commits += one->commits;
    to->elections += one->elections;
    to->reads += one->reads;
    to->snapshots += one->snapshots;
    to->confs += one->confs;
    to->joints += one->joints;
    to->transfers += one->transfers;
    to->deposed += one->deposed;
    to->crashes += one->crashes;
    to->stalls += one->stalls;
    to->corrupt += one->corrupt;
    to->disk_faults += one->disk_faults;
    to->replays += one->replays;
    to->drifts += one->drifts;
    to->chunks += one->chunks;
    to->probes += one->probes;
    to->stale_acks += one->stale_acks;
}

static bool run_seed(uint64_t seed, unsigned nodes, unsigned steps, bool verbose, struct stats *st,
                     unsigned *cls_out, enum check *ck_out, bool report)
{
    struct sim *s = calloc(1, sizeof(*s));
    if (!s)
        exit(2);
    s->seed = seed;
    s->rng.s = seed * 0x2545f4914f6cdd1dull + 1;
    s->n = nodes;
    s->verbose = verbose;
    s->report = report;
    s->cls = (unsigned)(seed % SIM_CLASSES);
    uint64_t variant = rng_below(&s->rng, 4);
    s->pre_vote = variant != 1;
    s->check_quorum = variant != 2;
    if (s->cls >= CL_CHURN && !s->pre_vote && !s->check_quorum)
        s->pre_vote = true;
    static const unsigned infl[] = {1, 2, 4, 16};
    static const uint64_t msg_bytes[] = {1, 100, 512, 1024, 64 * 1024}; /* 1: an entry per append */
    s->inflight_msgs_max = infl[rng_below(&s->rng, 4)];
    s->inflight_bytes_max = rng_ppm(&s->rng, 500000) ? 0 : 512 + rng_below(&s->rng, 8192);
    s->msg_bytes_max = msg_bytes[rng_below(&s->rng, 5)];
    if (s->msg_bytes_max == 1 && s->inflight_msgs_max < 4)
        s->inflight_msgs_max = 4; /* a follower far behind still catches up within a run */
    s->committed_bytes_max = rng_ppm(&s->rng, 500000) ? 0 : 1 + rng_below(&s->rng, 1024);
    s->uncommitted_bytes_max =
        rng_ppm(&s->rng, 100000) ? 16 * 1024 : 1024 + rng_below(&s->rng, 2048);
    static const uint32_t chunk[] = {32, 64, 128, 256};
    static const unsigned window[] = {1, 2, 4, 8};
    s->chunk_bytes = chunk[rng_below(&s->rng, 4)];
    s->chunk_window = window[rng_below(&s->rng, 4)];
    s->img_bytes = SM_SNAP_BYTES + 100 + rng_below(&s->rng, 900); /* 1 to 32 chunks */
    if (s->cls == CL_LEADERFALL)
        s->msg_bytes_max = 1; /* one entry per append */
    if (s->cls == CL_LONG || s->cls == CL_REPLAY)
        steps *= SIM_LONG_FACTOR; /* thousands of ticks: tens of elections, very old frames */
    pick_faults(s);
    s->probe_at = SIM_TICK_UNITS * (10 + rng_below(&s->rng, 15));
    current_sim = s;
    struct vset boot = {.voters = (1u << (nodes + 1)) - 2}; /* the bootstrap: voters 1..nodes */
    note_conf(s, 0, 0, boot);
    for (unsigned i = 0; i < nodes; i++) {
        struct node *nd = &s->nodes[i];
        nd->id = i + 1;
        nd->sim = s;
        nd->phase = (unsigned)rng_below(&s->rng, SIM_TICK_UNITS);
        nd->tick_units = SIM_TICK_UNITS - 2 + (unsigned)rng_below(&s->rng, 5); /* clock skew */
        nd->tick_units_base = nd->tick_units;
        sim_store_init(&nd->disk);
        node_start(s, nd);
    }
    trace(s,
          "seed %" PRIu64 " class %s prevote %d checkquorum %d msg bytes %" PRIu64
          " inflight %u chunk %u of %" PRIu64,
          seed, class_names[s->cls], s->pre_vote, s->check_quorum, s->msg_bytes_max,
          s->inflight_msgs_max, s->chunk_bytes, s->img_bytes);
    for (unsigned k = 0; k < steps && !s->failed; k++)
        unit_step(s, true);
    if (!s->failed)
        (void)liveness(s);
    bool ok = !s->failed;
    if (!ok && report) {
        printf("FAIL seed %" PRIu64 " (%s, %u nodes): %s\n", seed, class_names[s->cls], nodes,
               s->failure);
        printf("  trace (last %u events):\n", SIM_TRACE_LINES);
        print_trace(s, stdout);
    }
    stats_add(st, &s->st);
    *cls_out = s->cls;
    *ck_out = s->failed_check;
    current_sim = NULL;
    sim_free(s);
    free(s);
    return ok;
}

struct seed_run {
    uint64_t seed;
    unsigned nodes;
    unsigned steps;
    bool verbose;
    bool report;
    struct stats st; /* out */
    unsigned cls;    /* out */
    enum check ck;   /* out: what failed */
    bool ok;         /* out */
};

/* run_seed, but with keep_going an assertion failure inside the core counts as a failed seed
 * (CK_ABORT) instead of ending the program. */
static void run_seed_guarded(struct seed_run *volatile run, bool keep_going)
{
    run->ok = false;
    run->ck = CK_ABORT;
    run->cls = (unsigned)(run->seed % SIM_CLASSES);
    abort_armed = keep_going;
    if (sigsetjmp(abort_jmp, 1) == 0)
        run->ok = run_seed(run->seed, run->nodes, run->steps, run->verbose, &run->st, &run->cls,
                           &run->ck, run->report);
    else
        current_sim = NULL; /* its simulator is leaked: its state is not trustworthy */
    abort_armed = 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: raft-sim --seeds N [--first-seed S] [--nodes K] [--steps M] "
                    "[--keep-going] [--verbose]\n");
    return 2;
}

static bool parse_u64(const char *v, uint64_t *out)
{
    char *end;
    if (!v || !*v)
        return false;
    unsigned long long x = strtoull(v, &end, 10);
    if (*end)
        return false;
    *out = x;
    return true;
}

int main(int argc, char **argv)
{
    uint64_t seeds = 100, first = 1, nodes = 3, steps = SIM_STEPS_DEFAULT;
    bool verbose = false, keep_going = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "--seeds"))
            ok = parse_u64(v, &seeds), i++;
        else if (!strcmp(a, "--first-seed"))
            ok = parse_u64(v, &first), i++;
        else if (!strcmp(a, "--nodes"))
            ok = parse_u64(v, &nodes), i++;
        else if (!strcmp(a, "--steps"))
            ok = parse_u64(v, &steps), i++;
        else if (!strcmp(a, "--verbose"))
            verbose = true;
        else if (!strcmp(a, "--keep-going"))
            keep_going = true;
        else
            return usage();
        if (!ok)
            return usage();
    }
    if (nodes < 1 || nodes > SIM_NODES_MAX || steps > 100000000 || seeds == 0)
        return usage();
    signal(SIGABRT, on_abort);
    struct stats st[SIM_CLASSES];
    uint64_t pass[SIM_CLASSES] = {0}, failn[SIM_CLASSES] = {0};
    memset(st, 0, sizeof(st));
    uint64_t passed = 0, failed = 0;
    uint64_t by_check[CK_N][SIM_CLASSES];
    memset(by_check, 0, sizeof(by_check));
    for (uint64_t k = 0; k < seeds; k++) {
        struct seed_run run = {.seed = first + k,
                               .nodes = (unsigned)nodes,
                               .steps = (unsigned)steps,
                               .verbose = verbose,
                               .report = failed == 0};
        run_seed_guarded(&run, keep_going);
        unsigned cls = run.cls;
        enum check ck = run.ck;
        const struct stats one = run.st;
        bool ok = run.ok;
        if (!ok)
            by_check[ck][cls]++;
        stats_add(&st[cls], &one);
        if (ok) {
            passed++;
            pass[cls]++;
        } else {
            failed++;
            failn[cls]++;
        }
    }
    printf(
        "%-10s %6s %6s %6s | %s\n", "class", "runs", "passed", "failed",
        "per run: proposed elections reads snapshots chunks confs joint transfers deposed crashes "
        "stalls corrupt-frames disk-faults replays drifts probes stale-acks");
    for (unsigned c = 0; c < SIM_CLASSES; c++) {
        uint64_t runs = pass[c] + failn[c];
        if (runs == 0)
            continue;
        const struct stats *t = &st[c];
        printf("%-10s %6" PRIu64 " %6" PRIu64 " %6" PRIu64 " | %.0f %.1f %.0f %.1f %.1f %.1f %.1f "
               "%.1f %.1f %.1f %.1f %.1f %.1f %.1f %.1f %.1f %.1f\n",
               class_names[c], runs, pass[c], failn[c], (double)t->commits / runs,
               (double)t->elections / runs, (double)t->reads / runs, (double)t->snapshots / runs,
               (double)t->chunks / runs, (double)t->confs / runs, (double)t->joints / runs,
               (double)t->transfers / runs, (double)t->deposed / runs, (double)t->crashes / runs,
               (double)t->stalls / runs, (double)t->corrupt / runs, (double)t->disk_faults / runs,
               (double)t->replays / runs, (double)t->drifts / runs, (double)t->probes / runs,
               (double)t->stale_acks / runs);
    }
    for (unsigned ck = 0; ck < CK_N; ck++) {
        uint64_t total = 0;
        for (unsigned c = 0; c < SIM_CLASSES; c++)
            total += by_check[ck][c];
        if (!total)
            continue;
        printf("failed check %-16s %4" PRIu64 " seeds:", check_names[ck], total);
        for (unsigned c = 0; c < SIM_CLASSES; c++)
            if (by_check[ck][c])
                printf(" %s %" PRIu64, class_names[c], by_check[ck][c]);
        printf("\n");
    }
    printf("%" PRIu64 " passed, %" PRIu64 " failed\n", passed, failed);
    return failed ? 1 : 0;
}
