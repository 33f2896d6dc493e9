/* The Raft core: election, replication, snapshots, membership, transfer and ReadIndex as a pure
 * state machine (see raft.h for the interface and the section references).
 *
 * State kept here (Figure 2 of the paper plus the etcd-style extras):
 * - the log: entries (snap_index, last] in `ents` (owned copies), the last snapshot (index,
 *   term, configuration, data), `stable` = last index handed out for persisting, `commit`,
 *   `applied` = last index handed out for applying. Invariants:
 *   snap_index <= applied <= commit <= last and snap_index <= stable <= last.
 * - the configuration in force: the newest RAFT_ENTRY_CONF entry in the log, else the
 *   snapshot's (thesis §4.1: a server uses the latest configuration in its log, committed or
 *   not). `conf_index` is the index of that entry (or of the snapshot).
 * - per member progress (`prs`, one slot per member): match/next (§5.3), the flow-control state
 *   of etcd (PROBE: one append per heartbeat until a match is found; REPLICATE: pipelined
 *   appends bounded by the in-flight window; SNAPSHOT: waiting for an InstallSnapshot), whether
 *   it was heard from in the last election timeout (CheckQuorum) and its vote.
 * - pending ReadIndex requests, acknowledged per heartbeat round (`context`).
 * - the outbox: messages in the order created; each owns a copy of its entries and snapshot,
 *   so later log changes cannot alter a message already sent.
 *
 * Persistence ordering: messages leave only in a ready batch, after the caller persisted the
 * batch's hard state and entries, so a vote or an ack is never sent before it is durable
 * (§5.1). The leader counts its own log for commitment only up to `stable` (thesis §10.2.1
 * allows writing in parallel; we keep the simpler rule).
 *
 * No loop here runs unbounded: loops walk the members (<= RAFT_NODES_MAX), the in-memory log
 * (<= RAFT_LOG_ENTRIES_MAX), the entries of a message (<= RAFT_MSG_ENTRIES_MAX), the pending
 * reads (<= RAFT_READS_MAX) or the outbox (<= RAFT_OUTBOX_MAX). */
#include "raft.h"

#include <cstore.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum pr_state { PR_PROBE = 0, PR_REPLICATE, PR_SNAPSHOT };
enum vote_state { VOTE_NONE = 0, VOTE_GRANTED, VOTE_REJECTED };
enum poll_result { POLL_PENDING = 0, POLL_WON, POLL_LOST };

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
    unsigned snapshot_ticks;   /* SNAPSHOT: ticks waited; resend after an election timeout */
    unsigned infl_start;       /* ring of appends in flight (REPLICATE) */
    unsigned infl_n;
    uint64_t infl_bytes;
    struct raft_inflight infl[RAFT_INFLIGHT_MAX];
};

struct raft_read_pending {
    uint64_t request_id; /* caller's id */
    uint64_t index;      /* commit index when the read arrived */
    uint64_t seq;        /* heartbeat round that confirms it */
    uint32_t acks;       /* member slots that acknowledged a round >= seq */
    uint64_t origin;     /* node that asked (this one, or a follower, thesis §6.4.1) */
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
    struct raft_snapshot snap; /* last snapshot (index 0: none), owned data */
    bool snap_install;         /* snap came from the leader: the next ready installs it */
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

/* ------------------------------------------------------------------------------------------ */
/* Configurations                                                                              */

static bool ids_contain(const uint64_t *ids, unsigned n, uint64_t id)
{
    for (unsigned i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

bool raft_conf_is_voter(const struct raft_conf *c, uint64_t id)
{
    return ids_contain(c->voters, c->voters_n, id);
}

bool raft_conf_is_learner(const struct raft_conf *c, uint64_t id)
{
    return ids_contain(c->learners, c->learners_n, id);
}

bool raft_conf_valid(const struct raft_conf *c)
{
    if (c->voters_n < 1 || c->voters_n > RAFT_NODES_MAX)
        return false;
    if ((unsigned)c->voters_n + c->learners_n > RAFT_NODES_MAX)
        return false;
    for (unsigned i = 0; i < c->voters_n; i++) {
        if (c->voters[i] == 0 || ids_contain(c->voters, i, c->voters[i]))
            return false;
    }
    for (unsigned i = 0; i < c->learners_n; i++) {
        if (c->learners[i] == 0 || ids_contain(c->learners, i, c->learners[i]))
            return false;
        if (raft_conf_is_voter(c, c->learners[i]))
            return false;
    }
    return true;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (unsigned i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

size_t raft_conf_encode(const struct raft_conf *c, uint8_t *buf)
{
    cs_assert(raft_conf_valid(c));
    size_t off = 2;
    buf[0] = c->voters_n;
    buf[1] = c->learners_n;
    for (unsigned i = 0; i < c->voters_n; i++, off += 8)
        put_u64(buf + off, c->voters[i]);
    for (unsigned i = 0; i < c->learners_n; i++, off += 8)
        put_u64(buf + off, c->learners[i]);
    cs_assert(off <= RAFT_CONF_BYTES_MAX);
    return off;
}

int raft_conf_decode(const uint8_t *buf, size_t len, struct raft_conf *c)
{
    memset(c, 0, sizeof(*c));
    if (len < 2)
        return CS_ECORRUPT;
    unsigned nv = buf[0], nl = buf[1];
    if (nv > RAFT_NODES_MAX || nl > RAFT_NODES_MAX)
        return CS_ECORRUPT;
    if (len != 2 + 8 * (size_t)(nv + nl))
        return CS_ECORRUPT;
    c->voters_n = (uint8_t)nv;
    c->learners_n = (uint8_t)nl;
    for (unsigned i = 0; i < nv; i++)
        c->voters[i] = get_u64(buf + 2 + 8 * i);
    for (unsigned i = 0; i < nl; i++)
        c->learners[i] = get_u64(buf + 2 + 8 * (nv + i));
    return raft_conf_valid(c) ? 0 : CS_ECORRUPT;
}

static unsigned conf_quorum(const struct raft_conf *c)
{
    return c->voters_n / 2u + 1u;
}

/* ------------------------------------------------------------------------------------------ */
/* The log                                                                                     */

uint64_t raft_last_index(const struct raft *r)
{
    return r->snap.index + r->ents_n;
}

uint64_t raft_first_index(const struct raft *r)
{
    return r->snap.index + 1;
}

const struct raft_entry *raft_entry_at(const struct raft *r, uint64_t index)
{
    if (index <= r->snap.index || index > raft_last_index(r))
        return NULL;
    const struct raft_entry *e = &r->ents[index - r->snap.index - 1];
    cs_assert(e->index == index);
    return e;
}

bool raft_term_at(const struct raft *r, uint64_t index, uint64_t *term)
{
    if (index == r->snap.index) {
        *term = r->snap.term;
        return true;
    }
    const struct raft_entry *e = raft_entry_at(r, index);
    if (!e) {
        *term = 0;
        return false;
    }
    *term = e->term;
    return true;
}

/* Term at index, 0 when unknown (compacted or beyond the end). */
static uint64_t term_or0(const struct raft *r, uint64_t index)
{
    uint64_t t;
    (void)raft_term_at(r, index, &t);
    return t;
}

static uint64_t last_term(const struct raft *r)
{
    return term_or0(r, raft_last_index(r));
}

static bool log_matches(const struct raft *r, uint64_t index, uint64_t term)
{
    uint64_t t;
    return raft_term_at(r, index, &t) && t == term;
}

/* §5.4.1: is a log ending at (index, term) at least as up-to-date as ours? */
static bool log_up_to_date(const struct raft *r, uint64_t index, uint64_t term)
{
    uint64_t lt = last_term(r);
    return term > lt || (term == lt && index >= raft_last_index(r));
}

/* Fast backtracking (thesis §5.3 end, etcd findConflictByTerm): the largest index <= index whose
 * term is <= term, or the snapshot index if the walk reaches it. Bounded by the log length. */
static uint64_t find_conflict_by_term(const struct raft *r, uint64_t index, uint64_t term,
                                      uint64_t *found_term)
{
    if (index > raft_last_index(r))
        index = raft_last_index(r);
    for (; index > r->snap.index; index--) {
        uint64_t t = raft_entry_at(r, index)->term;
        if (t <= term) {
            *found_term = t;
            return index;
        }
    }
    *found_term = r->snap.index ? r->snap.term : 0;
    return index;
}

static void entry_free(struct raft_entry *e)
{
    free((void *)e->data);
    e->data = NULL;
}

static int log_reserve(struct raft *r, size_t n)
{
    if (r->ents_n + n > RAFT_LOG_ENTRIES_MAX)
        return CS_EFULL;
    if (r->ents_n + n <= r->ents_cap)
        return 0;
    size_t cap = r->ents_cap ? r->ents_cap : 64;
    while (cap < r->ents_n + n)
        cap *= 2;
    struct raft_entry *p = realloc(r->ents, cap * sizeof(*p));
    if (!p)
        return -ENOMEM;
    r->ents = p;
    r->ents_cap = cap;
    return 0;
}

/* Append a copy of e at the end of the log; e->index must be last + 1. */
static int log_push(struct raft *r, const struct raft_entry *e)
{
    cs_assert(e->index == raft_last_index(r) + 1);
    cs_assert(e->len <= RAFT_ENTRY_BYTES_MAX);
    int rc = log_reserve(r, 1);
    if (rc)
        return rc;
    struct raft_entry c = *e;
    c.data = NULL;
    if (e->len) {
        uint8_t *d = malloc(e->len);
        if (!d)
            return -ENOMEM;
        memcpy(d, e->data, e->len);
        c.data = d;
    }
    r->ents[r->ents_n++] = c;
    return 0;
}

static void conf_set(struct raft *r, const struct raft_conf *c, uint64_t index);

/* The configuration in force: the newest CONF entry in the log, else the snapshot's (thesis
 * §4.1). O(log length), used after truncation and at start only. */
static void conf_recompute(struct raft *r)
{
    for (size_t i = r->ents_n; i > 0; i--) {
        const struct raft_entry *e = &r->ents[i - 1];
        if (e->type != RAFT_ENTRY_CONF)
            continue;
        struct raft_conf c;
        int rc = raft_conf_decode(e->data, e->len, &c);
        cs_assert(rc == 0); /* validated before it entered the log */
        conf_set(r, &c, e->index);
        return;
    }
    conf_set(r, &r->snap.conf, r->snap.index);
}

/* Drop entries from index on (a conflicting suffix, §5.3). Never a committed one. */
static void log_truncate(struct raft *r, uint64_t index)
{
    cs_assert(index > r->commit);
    cs_assert(index > r->snap.index);
    uint64_t last = raft_last_index(r);
    for (uint64_t i = index; i <= last; i++)
        entry_free(&r->ents[i - r->snap.index - 1]);
    r->ents_n = index - r->snap.index - 1;
    if (r->stable >= index)
        r->stable = index - 1;
    if (r->conf_index >= index)
        conf_recompute(r);
}

static int conf_apply_entry(struct raft *r, const struct raft_entry *e)
{
    struct raft_conf c;
    int rc = raft_conf_decode(e->data, e->len, &c);
    if (rc)
        return rc;
    conf_set(r, &c, e->index);
    return 0;
}

/* §5.3 AppendEntries receiver steps 3-4: skip the entries we already have, truncate at the
 * first conflict, append the rest. Returns 0, or a negative code if the log is full (the
 * entries from the failure on are not appended; the reply then acknowledges less). */
static int log_append_follower(struct raft *r, const struct raft_entry *es, uint32_t n,
                               uint64_t *last_new)
{
    uint32_t i = 0;
    for (; i < n; i++) {
        if (!log_matches(r, es[i].index, es[i].term))
            break;
    }
    *last_new = n ? es[0].index - 1 + i : 0;
    if (i == n)
        return 0;
    if (es[i].index <= raft_last_index(r))
        log_truncate(r, es[i].index);
    for (; i < n; i++) {
        int rc = log_push(r, &es[i]);
        if (rc)
            return rc;
        if (es[i].type == RAFT_ENTRY_CONF) {
            rc = conf_apply_entry(r, &es[i]);
            cs_assert(rc == 0); /* the decoder checked conf entries */
        }
        *last_new = es[i].index;
    }
    return 0;
}

static void commit_to(struct raft *r, uint64_t index)
{
    if (index > raft_last_index(r))
        index = raft_last_index(r);
    if (index > r->commit)
        r->commit = index;
}

/* ------------------------------------------------------------------------------------------ */
/* Progress and flow control                                                                   */

static struct raft_progress *pr_find(struct raft *r, uint64_t id)
{
    for (unsigned i = 0; i < RAFT_NODES_MAX; i++)
        if (r->prs[i].id == id && id != 0)
            return &r->prs[i];
    return NULL;
}

static unsigned pr_slot(const struct raft *r, const struct raft_progress *pr)
{
    return (unsigned)(pr - r->prs);
}

static void pr_reset(struct raft *r, struct raft_progress *pr)
{
    pr->state = PR_PROBE;
    pr->vote = VOTE_NONE;
    pr->probe_sent = false;
    pr->recent_active = false;
    pr->match = 0;
    pr->next = raft_last_index(r) + 1;
    pr->pending_snapshot = 0;
    pr->snapshot_ticks = 0;
    pr->infl_start = 0;
    pr->infl_n = 0;
    pr->infl_bytes = 0;
    if (pr->id == r->id) {
        pr->match = r->stable;
        pr->recent_active = true;
    }
}

static void infl_add(struct raft *r, struct raft_progress *pr, uint64_t index, uint64_t bytes)
{
    cs_assert(pr->infl_n < r->cfg.inflight_msgs_max);
    unsigned at = (pr->infl_start + pr->infl_n) % RAFT_INFLIGHT_MAX;
    pr->infl[at].index = index;
    pr->infl[at].bytes = bytes;
    pr->infl_n++;
    pr->infl_bytes += bytes;
}

/* Forget the appends acknowledged up to index (all of them when they carry smaller indexes). */
static void infl_free_to(struct raft_progress *pr, uint64_t index)
{
    while (pr->infl_n > 0 && pr->infl[pr->infl_start].index <= index) {
        pr->infl_bytes -= pr->infl[pr->infl_start].bytes;
        pr->infl_start = (pr->infl_start + 1) % RAFT_INFLIGHT_MAX;
        pr->infl_n--;
    }
}

static bool infl_full(const struct raft *r, const struct raft_progress *pr)
{
    if (pr->infl_n >= r->cfg.inflight_msgs_max)
        return true;
    return r->cfg.inflight_bytes_max && pr->infl_bytes >= r->cfg.inflight_bytes_max;
}

static void pr_become_probe(struct raft *r, struct raft_progress *pr)
{
    /* after a snapshot, probe right after it; otherwise resume after what matched */
    uint64_t next = pr->match + 1;
    if (pr->state == PR_SNAPSHOT && pr->pending_snapshot + 1 > next)
        next = pr->pending_snapshot + 1;
    pr->state = PR_PROBE;
    pr->next = next;
    pr->probe_sent = false;
    pr->pending_snapshot = 0;
    pr->infl_n = 0;
    pr->infl_start = 0;
    pr->infl_bytes = 0;
    (void)r;
}

static void pr_become_replicate(struct raft_progress *pr)
{
    pr->state = PR_REPLICATE;
    pr->next = pr->match + 1;
    pr->probe_sent = false;
    pr->infl_n = 0;
    pr->infl_start = 0;
    pr->infl_bytes = 0;
}

static bool pr_paused(const struct raft *r, const struct raft_progress *pr)
{
    switch (pr->state) {
    case PR_PROBE:
        return pr->probe_sent;
    case PR_REPLICATE:
        return infl_full(r, pr);
    default:
        return true;
    }
}

/* A rejection of the append that followed `rejected`; hint is where the follower suggests to
 * continue. Returns false for a stale rejection (etcd MaybeDecrTo). */
static bool pr_decrease_to(struct raft_progress *pr, uint64_t rejected, uint64_t hint)
{
    if (pr->state == PR_REPLICATE) {
        if (rejected <= pr->match)
            return false;
        pr->next = pr->match + 1;
        return true;
    }
    if (pr->next - 1 != rejected)
        return false;
    uint64_t next = rejected < hint + 1 ? rejected : hint + 1;
    if (next < pr->match + 1)
        next = pr->match + 1;
    if (next < 1)
        next = 1;
    pr->next = next;
    pr->probe_sent = false;
    return true;
}

/* Rebuild the member slots for the configuration c, keeping what we know of members that stay. */
static void prs_rebuild(struct raft *r, const struct raft_conf *c)
{
    struct raft_progress *old = r->prs;
    bool keep[RAFT_NODES_MAX] = {false};
    for (unsigned i = 0; i < RAFT_NODES_MAX; i++)
        keep[i] =
            old[i].id && (raft_conf_is_voter(c, old[i].id) || raft_conf_is_learner(c, old[i].id));
    for (unsigned i = 0; i < RAFT_NODES_MAX; i++) {
        if (!keep[i])
            old[i].id = 0;
        else
            old[i].learner = raft_conf_is_learner(c, old[i].id);
    }
    for (unsigned k = 0; k < (unsigned)c->voters_n + c->learners_n; k++) {
        bool learner = k >= c->voters_n;
        uint64_t id = learner ? c->learners[k - c->voters_n] : c->voters[k];
        if (pr_find(r, id))
            continue;
        unsigned slot = 0;
        while (slot < RAFT_NODES_MAX && old[slot].id)
            slot++;
        cs_assert(slot < RAFT_NODES_MAX);
        old[slot].id = id;
        old[slot].learner = learner;
        pr_reset(r, &old[slot]);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Outbox                                                                                      */

/* Double the outbox (a busy leader of many members needs more than the first 32 slots). Never
 * called between raft_ready and raft_advance, so the views of a batch stay valid. */
static int outbox_grow(struct raft *r)
{
    cs_assert(!r->in_ready);
    if (r->outbox_cap >= RAFT_OUTBOX_MAX)
        return CS_EFULL;
    size_t cap = r->outbox_cap ? r->outbox_cap * 2 : 32;
    struct raft_msg *o = realloc(r->outbox, cap * sizeof(*o));
    if (!o)
        return -ENOMEM;
    r->outbox = o;
    void **mem = realloc(r->outbox_mem, cap * sizeof(*mem));
    if (!mem)
        return -ENOMEM;
    r->outbox_mem = mem;
    r->outbox_cap = cap;
    return 0;
}

static struct raft_msg *msg_new(struct raft *r, uint8_t type, uint64_t to)
{
    if (r->outbox_n >= r->outbox_cap && outbox_grow(r) != 0)
        return NULL; /* dropped like a lost packet; Raft retries */
    struct raft_msg *m = &r->outbox[r->outbox_n];
    memset(m, 0, sizeof(*m));
    r->outbox_mem[r->outbox_n] = NULL;
    r->outbox_n++;
    m->type = type;
    m->from = r->id;
    m->to = to;
    m->term = r->term;
    return m;
}

static void send_simple(struct raft *r, uint8_t type, uint64_t to, uint64_t term, bool reject,
                        uint64_t index)
{
    struct raft_msg *m = msg_new(r, type, to);
    if (!m)
        return;
    m->term = term;
    m->reject = reject;
    m->index = index;
}

static void outbox_clear(struct raft *r)
{
    for (size_t i = 0; i < r->outbox_n; i++) {
        free(r->outbox_mem[i]);
        r->outbox_mem[i] = NULL;
    }
    r->outbox_n = 0;
}

/* Copy entries [lo, hi] and their data into one block owned by the message. */
static int msg_attach_entries(struct raft *r, struct raft_msg *m, uint64_t lo, uint64_t hi)
{
    size_t n = (size_t)(hi - lo + 1), bytes = n * sizeof(struct raft_entry);
    for (uint64_t i = lo; i <= hi; i++)
        bytes += raft_entry_at(r, i)->len;
    uint8_t *mem = malloc(bytes);
    if (!mem)
        return -ENOMEM;
    struct raft_entry *es = (struct raft_entry *)mem;
    uint8_t *data = mem + n * sizeof(struct raft_entry);
    for (uint64_t i = lo; i <= hi; i++) {
        const struct raft_entry *e = raft_entry_at(r, i);
        struct raft_entry *c = &es[i - lo];
        *c = *e;
        if (e->len) {
            memcpy(data, e->data, e->len);
            c->data = data;
            data += e->len;
        }
    }
    m->entries = es;
    m->entries_n = (uint32_t)n;
    r->outbox_mem[m - r->outbox] = mem;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Sending                                                                                     */

static void send_snapshot(struct raft *r, struct raft_progress *pr)
{
    struct raft_msg *m = msg_new(r, RAFT_MSG_SNAP, pr->id);
    if (!m)
        return;
    m->has_snapshot = true;
    m->snapshot = r->snap;
    if (r->snap.len) {
        uint8_t *d = malloc(r->snap.len);
        if (!d) {
            r->outbox_n--;
            return;
        }
        memcpy(d, r->snap.data, r->snap.len);
        m->snapshot.data = d;
        r->outbox_mem[m - r->outbox] = d;
    }
    pr->state = PR_SNAPSHOT;
    pr->pending_snapshot = r->snap.index;
    pr->snapshot_ticks = 0;
    pr->infl_n = 0;
    pr->infl_start = 0;
    pr->infl_bytes = 0;
}

/* Send the follower what it misses (§5.3), or the snapshot when that is compacted (§7).
 * With send_empty false, an append without entries is not sent. Returns whether it sent. */
static bool send_append(struct raft *r, struct raft_progress *pr, bool send_empty)
{
    cs_assert(pr->id != r->id);
    if (pr_paused(r, pr))
        return false;
    uint64_t prev = pr->next - 1, prev_term;
    if (!raft_term_at(r, prev, &prev_term)) {
        if (prev < r->snap.index) {
            send_snapshot(r, pr);
            return true;
        }
        /* next beyond our log: only after a truncation the leader never does */
        pr->next = raft_last_index(r) + 1;
        prev = pr->next - 1;
        prev_term = last_term(r);
    }
    uint64_t last = raft_last_index(r), hi = prev, bytes = 0;
    while (hi < last && hi - prev < RAFT_MSG_ENTRIES_MAX) {
        uint64_t len = raft_entry_at(r, hi + 1)->len;
        if (hi > prev && bytes + len > r->cfg.msg_bytes_max)
            break;
        bytes += len;
        hi++;
    }
    if (hi == prev && !send_empty)
        return false;
    struct raft_msg *m = msg_new(r, RAFT_MSG_APP, pr->id);
    if (!m)
        return false;
    m->index = prev;
    m->log_term = prev_term;
    m->commit = r->commit;
    if (hi > prev && msg_attach_entries(r, m, prev + 1, hi) != 0) {
        r->outbox_n--; /* out of memory: like a lost message */
        return false;
    }
    if (pr->state == PR_REPLICATE) {
        if (hi > prev) {
            pr->next = hi + 1;
            infl_add(r, pr, hi, bytes);
        }
    } else {
        pr->probe_sent = true;
    }
    return true;
}

static void bcast_append(struct raft *r)
{
    for (unsigned i = 0; i < RAFT_NODES_MAX; i++)
        if (r->prs[i].id && r->prs[i].id != r->id)
            (void)send_append(r, &r->prs[i], true);
}

static void send_heartbeat(struct raft *r, struct raft_progress *pr, uint64_t context)
{
    struct raft_msg *m = msg_new(r, RAFT_MSG_HEARTBEAT, pr->id);
    if (!m)
        return;
    /* never tell a follower to commit beyond what it is known to hold */
    m->commit = pr->match < r->commit ? pr->match : r->commit;
    m->context = context;
}

static void bcast_heartbeat(struct raft *r, uint64_t context)
{
    for (unsigned i = 0; i < RAFT_NODES_MAX; i++) {
        struct raft_progress *pr = &r->prs[i];
        if (!pr->id || pr->id == r->id)
            continue;
        send_heartbeat(r, pr, context);
        if (pr->state == PR_PROBE)
            pr->probe_sent = false; /* one probe per heartbeat period */
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Roles                                                                                       */

static void reads_drop(struct raft *r)
{
    r->reads_start = 0;
    r->reads_n = 0;
}

static void reset_timeout(struct raft *r)
{
    uint64_t e = r->cfg.election_ticks;
    r->timeout = (unsigned)(e + r->cfg.rand(r->cfg.rand_ctx) % e);
}

static void reset(struct raft *r, uint64_t term)
{
    if (term != r->term) {
        cs_assert(term > r->term);
        r->term = term;
        r->vote = 0;
    }
    r->lead = 0;
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    reset_timeout(r);
    r->transferee = 0;
    r->transfer_elapsed = 0;
    r->uncommitted_bytes = 0;
    reads_drop(r);
    for (unsigned i = 0; i < RAFT_NODES_MAX; i++)
        if (r->prs[i].id)
            pr_reset(r, &r->prs[i]);
}

static void become_follower(struct raft *r, uint64_t term, uint64_t lead)
{
    reset(r, term);
    r->role = RAFT_FOLLOWER;
    r->lead = lead;
}

static void become_leader(struct raft *r)
{
    cs_assert(r->role == RAFT_CANDIDATE);
    reset(r, r->term);
    r->role = RAFT_LEADER;
    r->lead = r->id;
    /* §8 / thesis §6.4: a no-op entry of the new term, so that commitment (§5.4.2) and
     * ReadIndex can make progress */
    struct raft_entry e = {.term = r->term, .index = raft_last_index(r) + 1};
    int rc = log_push(r, &e);
    cs_assert(rc == 0 || rc == -ENOMEM || rc == CS_EFULL);
}

static bool promotable(const struct raft *r)
{
    return raft_conf_is_voter(&r->conf, r->id);
}

static enum poll_result poll_votes(const struct raft *r)
{
    unsigned granted = 0, rejected = 0, q = conf_quorum(&r->conf);
    for (unsigned i = 0; i < RAFT_NODES_MAX; i++) {
        const struct raft_progress *pr = &r->prs[i];
        if (!pr->id || pr->learner)
            continue;
        granted += pr->vote == VOTE_GRANTED;
        rejected += pr->vote == VOTE_REJECTED;
    }
    if (granted >= q)
        return POLL_WON;
    if (rejected > r->conf.voters_n - q)
        return POLL_LOST;
    return POLL_PENDING;
}

/* §5.2 election, preceded by a PreVote round when enabled (thesis §9.6). transfer marks an
 * election started by TimeoutNow, which voters honour despite CheckQuorum (thesis §3.10). */
static void campaign(struct raft *r, bool pre, bool transfer)
{
    if (!promotable(r))
        return;
    if (r->conf.voters_n == 1)
        pre = false; /* our own vote is a quorum: no round to run (and no recursion) */
    uint64_t term;
    uint8_t type;
    if (pre) {
        reset(r, r->term);
        r->role = RAFT_PRECANDIDATE;
        term = r->term + 1;
        type = RAFT_MSG_PREVOTE;
    } else {
        reset(r, r->term + 1);
        r->role = RAFT_CANDIDATE;
        r->vote = r->id;
        term = r->term;
        type = RAFT_MSG_VOTE;
    }
    pr_find(r, r->id)->vote = VOTE_GRANTED;
    if (poll_votes(r) == POLL_WON) {
        cs_assert(!pre); /* a single voter skips PreVote, see above */
        become_leader(r);
        bcast_append(r); /* learners */
        return;
    }
    for (unsigned i = 0; i < RAFT_NODES_MAX; i++) {
        struct raft_progress *pr = &r->prs[i];
        if (!pr->id || pr->learner || pr->id == r->id)
            continue;
        struct raft_msg *m = msg_new(r, type, pr->id);
        if (!m)
            continue;
        m->term = term;
        m->index = raft_last_index(r);
        m->log_term = last_term(r);
        m->context = transfer ? 1 : 0;
    }
}

static void conf_set(struct raft *r, const struct raft_conf *c, uint64_t index)
{
    cs_assert(raft_conf_valid(c));
    r->conf = *c;
    r->conf_index = index;
    prs_rebuild(r, c);
    if (r->transferee && !raft_conf_is_voter(c, r->transferee)) {
        r->transferee = 0;
        r->transfer_elapsed = 0;
    }
    /* ReadIndex acks are per slot: start the count again (thesis §6.4 stays safe: later
     * heartbeat rounds confirm every pending read) */
    struct raft_progress *self = pr_find(r, r->id);
    for (unsigned k = 0; k < r->reads_n; k++) {
        struct raft_read_pending *p = &r->reads[(r->reads_start + k) % RAFT_READS_MAX];
        p->acks = self ? 1u << pr_slot(r, self) : 0;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Leader: commitment and reads                                                                */

/* §5.3, §5.4.2: the highest index stored on a quorum of voters, committed only if it is of the
 * current term. */
static bool maybe_commit(struct raft *r)
{
    uint64_t m[RAFT_NODES_MAX];
    unsigned n = 0;
    for (unsigned i = 0; i < RAFT_NODES_MAX; i++)
        if (r->prs[i].id && !r->prs[i].learner)
            m[n++] = r->prs[i].match;
    cs_assert(n == r->conf.voters_n);
    /* insertion sort, descending; n <= RAFT_NODES_MAX */
    for (unsigned i = 1; i < n; i++) {
        uint64_t v = m[i];
        unsigned j = i;
        for (; j > 0 && m[j - 1] < v; j--)
            m[j] = m[j - 1];
        m[j] = v;
    }
    uint64_t idx = m[conf_quorum(&r->conf) - 1];
    if (idx <= r->commit || term_or0(r, idx) != r->term)
        return false;
    for (uint64_t i = r->commit + 1; i <= idx; i++) {
        uint64_t len = raft_entry_at(r, i)->len; /* entries of earlier leaders were not counted */
        r->uncommitted_bytes -= len < r->uncommitted_bytes ? len : r->uncommitted_bytes;
    }
    r->commit = idx;
    return true;
}

static bool acks_quorum(const struct raft *r, uint32_t acks)
{
    unsigned n = 0;
    for (unsigned i = 0; i < RAFT_NODES_MAX; i++)
        if (r->prs[i].id && !r->prs[i].learner && (acks & (1u << i)))
            n++;
    return n >= conf_quorum(&r->conf);
}

/* Release the reads at the head of the queue that a quorum confirmed (thesis §6.4 step 3). */
static void reads_release(struct raft *r)
{
    while (r->reads_n > 0) {
        struct raft_read_pending *p = &r->reads[r->reads_start];
        if (!acks_quorum(r, p->acks))
            return;
        if (p->origin != r->id) {
            struct raft_msg *m = msg_new(r, RAFT_MSG_READ_INDEX_RESP, p->origin);
            if (m) {
                m->index = p->index;
                m->context = p->request_id;
            }
        } else {
            cs_assert(r->ready_reads_n < RAFT_READS_MAX);
            r->ready_reads[r->ready_reads_n].index = p->index;
            r->ready_reads[r->ready_reads_n].request_id = p->request_id;
            r->ready_reads_n++;
        }
        r->reads_start = (r->reads_start + 1) % RAFT_READS_MAX;
        r->reads_n--;
    }
}

static void reads_ack(struct raft *r, unsigned slot, uint64_t context)
{
    for (unsigned k = 0; k < r->reads_n; k++) {
        struct raft_read_pending *p = &r->reads[(r->reads_start + k) % RAFT_READS_MAX];
        if (p->seq <= context)
            p->acks |= 1u << slot;
    }
    reads_release(r);
}

static bool committed_in_term(const struct raft *r)
{
    return term_or0(r, r->commit) == r->term;
}

/* thesis §6.4 steps 1-2 on the leader, for itself or for a follower (origin). */
static int read_start(struct raft *r, uint64_t request_id, uint64_t origin)
{
    cs_assert(r->role == RAFT_LEADER);
    if (!committed_in_term(r))
        return RAFT_EBUSY; /* thesis §6.4 step 1 */
    if (r->reads_n + r->ready_reads_n >= RAFT_READS_MAX)
        return CS_EFULL;
    struct raft_read_pending *p = &r->reads[(r->reads_start + r->reads_n) % RAFT_READS_MAX];
    p->request_id = request_id;
    p->index = r->commit;
    p->seq = ++r->read_seq;
    p->acks = 1u << pr_slot(r, pr_find(r, r->id));
    p->origin = origin;
    r->reads_n++;
    reads_release(r); /* a single voter is its own quorum */
    if (r->reads_n)
        bcast_heartbeat(r, r->read_seq);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Message handlers                                                                            */

/* §5.3 AppendEntries receiver. */
static void handle_append(struct raft *r, const struct raft_msg *m)
{
    if (m->index < r->commit) {
        send_simple(r, RAFT_MSG_APP_RESP, m->from, r->term, false, r->commit);
        return;
    }
    if (log_matches(r, m->index, m->log_term)) {
        uint64_t last_new = m->index;
        int rc = log_append_follower(r, m->entries, m->entries_n, &last_new);
        if (m->entries_n == 0 || last_new < m->index)
            last_new = m->index;
        (void)rc; /* log full: acknowledge what we took */
        commit_to(r, m->commit < last_new ? m->commit : last_new);
        send_simple(r, RAFT_MSG_APP_RESP, m->from, r->term, false, last_new);
        return;
    }
    /* reject with a hint (fast backtracking): the last index whose term is <= prevLogTerm */
    uint64_t ht, hint = find_conflict_by_term(r, m->index, m->log_term, &ht);
    struct raft_msg *resp = msg_new(r, RAFT_MSG_APP_RESP, m->from);
    if (!resp)
        return;
    resp->reject = true;
    resp->index = m->index;
    resp->hint = hint;
    resp->log_term = ht;
}

static void handle_heartbeat(struct raft *r, const struct raft_msg *m)
{
    commit_to(r, m->commit);
    struct raft_msg *resp = msg_new(r, RAFT_MSG_HEARTBEAT_RESP, m->from);
    if (resp)
        resp->context = m->context;
}

/* §7 InstallSnapshot receiver. Returns whether the snapshot replaced the log. */
static bool restore(struct raft *r, const struct raft_snapshot *s)
{
    if (s->index <= r->commit)
        return false;
    if (log_matches(r, s->index, s->term)) {
        commit_to(r, s->index); /* we hold it all: just fast-forward (§7 step 6) */
        return false;
    }
    uint8_t *d = NULL;
    if (s->len) {
        d = malloc(s->len);
        if (!d)
            return false;
        memcpy(d, s->data, s->len);
    }
    for (size_t i = 0; i < r->ents_n; i++)
        entry_free(&r->ents[i]);
    r->ents_n = 0;
    free((void *)r->snap.data);
    r->snap = *s;
    r->snap.data = d;
    r->snap_install = true;
    r->stable = s->index;
    r->commit = s->index;
    r->applied = s->index;
    conf_set(r, &s->conf, s->index);
    return true;
}

static void handle_snapshot(struct raft *r, const struct raft_msg *m)
{
    if (restore(r, &m->snapshot))
        send_simple(r, RAFT_MSG_APP_RESP, m->from, r->term, false, raft_last_index(r));
    else
        send_simple(r, RAFT_MSG_APP_RESP, m->from, r->term, false, r->commit);
}

static void send_timeout_now(struct raft *r, uint64_t to)
{
    struct raft_msg *m = msg_new(r, RAFT_MSG_TIMEOUT_NOW, to);
    (void)m;
}

static void handle_append_resp(struct raft *r, struct raft_progress *pr, const struct raft_msg *m)
{
    pr->recent_active = true;
    if (m->reject) {
        uint64_t probe = m->hint;
        if (m->log_term > 0) {
            uint64_t t;
            probe = find_conflict_by_term(r, m->hint, m->log_term, &t);
        }
        if (pr_decrease_to(pr, m->index, probe)) {
            if (pr->state == PR_REPLICATE)
                pr_become_probe(r, pr);
            (void)send_append(r, pr, true);
        }
        return;
    }
    bool was_paused = pr_paused(r, pr);
    if (m->index <= pr->match && pr->state != PR_SNAPSHOT)
        return; /* stale */
    if (m->index > pr->match)
        pr->match = m->index;
    if (pr->next < m->index + 1)
        pr->next = m->index + 1;
    pr->probe_sent = false;
    if (pr->state == PR_PROBE) {
        pr_become_replicate(pr);
    } else if (pr->state == PR_SNAPSHOT) {
        if (pr->match < pr->pending_snapshot)
            return;
        pr_become_probe(r, pr);
        pr_become_replicate(pr);
    } else {
        infl_free_to(pr, m->index);
    }
    if (maybe_commit(r))
        bcast_append(r);
    else if (was_paused)
        (void)send_append(r, pr, true);
    /* pipelining: fill the window (bounded by inflight_msgs_max) */
    for (unsigned k = 0; k < r->cfg.inflight_msgs_max; k++)
        if (!send_append(r, pr, false))
            break;
    if (pr->id == r->transferee && pr->match == raft_last_index(r))
        send_timeout_now(r, pr->id);
}

static void step_leader(struct raft *r, const struct raft_msg *m)
{
    struct raft_progress *pr = pr_find(r, m->from);
    if (!pr)
        return; /* not a member */
    switch (m->type) {
    case RAFT_MSG_APP_RESP:
        handle_append_resp(r, pr, m);
        break;
    case RAFT_MSG_READ_INDEX:
        if (read_start(r, m->context, m->from) != 0) {
            struct raft_msg *resp = msg_new(r, RAFT_MSG_READ_INDEX_RESP, m->from);
            if (resp) {
                resp->reject = true;
                resp->context = m->context;
            }
        }
        break;
    case RAFT_MSG_HEARTBEAT_RESP:
        pr->recent_active = true;
        pr->probe_sent = false;
        if (pr->state == PR_REPLICATE && infl_full(r, pr))
            infl_free_to(pr, pr->infl[pr->infl_start].index); /* let one more through */
        /* Behind: send even an empty append. In REPLICATE, next may already point past
         * entries whose append was lost; only a probe at next - 1 makes the follower reject
         * and the leader back up. Without it, a lost append with no later proposal stalls the
         * follower for good. */
        if (pr->match < raft_last_index(r))
            (void)send_append(r, pr, true);
        if (!pr->learner)
            reads_ack(r, pr_slot(r, pr), m->context);
        break;
    default:
        break;
    }
}

static void step_candidate(struct raft *r, const struct raft_msg *m)
{
    uint8_t want = r->role == RAFT_PRECANDIDATE ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
    switch (m->type) {
    case RAFT_MSG_APP:
        become_follower(r, m->term, m->from);
        handle_append(r, m);
        return;
    case RAFT_MSG_HEARTBEAT:
        become_follower(r, m->term, m->from);
        handle_heartbeat(r, m);
        return;
    case RAFT_MSG_SNAP:
        become_follower(r, m->term, m->from);
        handle_snapshot(r, m);
        return;
    default:
        break;
    }
    if (m->type != want)
        return;
    struct raft_progress *pr = pr_find(r, m->from);
    if (!pr || pr->learner)
        return;
    if (pr->vote == VOTE_NONE)
        pr->vote = m->reject ? VOTE_REJECTED : VOTE_GRANTED;
    switch (poll_votes(r)) {
    case POLL_WON:
        if (r->role == RAFT_PRECANDIDATE) {
            campaign(r, false, false);
        } else {
            become_leader(r);
            bcast_append(r);
        }
        break;
    case POLL_LOST:
        become_follower(r, r->term, 0);
        break;
    default:
        break;
    }
}

static void step_follower(struct raft *r, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_APP:
        r->election_elapsed = 0;
        r->lead = m->from;
        handle_append(r, m);
        break;
    case RAFT_MSG_HEARTBEAT:
        r->election_elapsed = 0;
        r->lead = m->from;
        handle_heartbeat(r, m);
        break;
    case RAFT_MSG_SNAP:
        r->election_elapsed = 0;
        r->lead = m->from;
        handle_snapshot(r, m);
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        /* thesis §3.10: start an election at once, skipping PreVote */
        campaign(r, false, true);
        break;
    case RAFT_MSG_READ_INDEX_RESP:
        if (!m->reject && m->from == r->lead && r->ready_reads_n < RAFT_READS_MAX) {
            r->ready_reads[r->ready_reads_n].index = m->index;
            r->ready_reads[r->ready_reads_n].request_id = m->context;
            r->ready_reads_n++;
        }
        break;
    default:
        break;
    }
}

/* §5.2, §5.4.1, thesis §9.6: grant a (pre)vote at most once per term, to an up-to-date log. */
static void handle_vote(struct raft *r, const struct raft_msg *m)
{
    bool pre = m->type == RAFT_MSG_PREVOTE;
    uint8_t resp = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
    bool can = r->vote == m->from || (r->vote == 0 && r->lead == 0) || (pre && m->term > r->term);
    if (can && log_up_to_date(r, m->index, m->log_term)) {
        send_simple(r, resp, m->from, m->term, false, 0);
        if (!pre) {
            r->election_elapsed = 0;
            r->vote = m->from;
        }
    } else {
        send_simple(r, resp, m->from, r->term, true, 0);
    }
}

static bool msg_sane(const struct raft *r, const struct raft_msg *m)
{
    if (m->type < RAFT_MSG_APP || m->type >= RAFT_MSG_TYPE_END)
        return false;
    if (m->from == 0 || m->from == r->id)
        return false;
    if (m->type == RAFT_MSG_SNAP &&
        (!m->has_snapshot || !raft_conf_valid(&m->snapshot.conf) || m->snapshot.index == 0 ||
         m->snapshot.len > RAFT_SNAPSHOT_BYTES_MAX || (m->snapshot.len && !m->snapshot.data)))
        return false;
    if (m->entries_n > RAFT_MSG_ENTRIES_MAX || (m->entries_n && m->type != RAFT_MSG_APP))
        return false;
    for (uint32_t i = 0; i < m->entries_n; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (e->index != m->index + 1 + i || e->term > m->term || e->len > RAFT_ENTRY_BYTES_MAX)
            return false;
        if (e->len && !e->data)
            return false;
        if (e->type == RAFT_ENTRY_CONF) {
            struct raft_conf c;
            if (raft_conf_decode(e->data, e->len, &c) != 0)
                return false;
        } else if (e->type != RAFT_ENTRY_NORMAL) {
            return false;
        }
    }
    return true;
}

/* The log invariants of the file comment; cheap, checked after every input. */
static void check_invariants(const struct raft *r)
{
    uint64_t last = raft_last_index(r);
    cs_assert(r->snap.index <= r->applied);
    cs_assert(r->applied <= r->commit);
    cs_assert(r->commit <= last);
    cs_assert(r->snap.index <= r->stable);
    cs_assert(r->stable <= last);
    cs_assert(r->role != RAFT_LEADER || r->lead == r->id);
    cs_assert(r->role != RAFT_LEADER || raft_conf_is_voter(&r->conf, r->id));
}

static void step(struct raft *r, const struct raft_msg *m);

int raft_step(struct raft *r, const struct raft_msg *m)
{
    cs_assert(!r->in_ready);
    if (m->to != r->id)
        return CS_EINVAL;
    step(r, m);
    check_invariants(r);
    return 0;
}

static void step(struct raft *r, const struct raft_msg *m)
{
    if (!msg_sane(r, m))
        return;
    bool vote_req = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE;
    if (m->term > r->term) {
        if (vote_req) {
            /* thesis §4.2.3 / §6.2: while a leader is heard from, ignore disruptive servers
             * (unless the election comes from a leadership transfer) */
            bool in_lease =
                r->cfg.check_quorum && r->lead != 0 && r->election_elapsed < r->cfg.election_ticks;
            if (m->context != 1 && in_lease)
                return;
        }
        if (m->type == RAFT_MSG_PREVOTE) {
            /* no term change for a prevote */
        } else if (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject) {
            /* a granted prevote carries the future term; our real campaign raises it */
        } else if (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT ||
                   m->type == RAFT_MSG_SNAP) {
            become_follower(r, m->term, m->from);
        } else {
            /* Figure 2, rules for followers: only a current leader's message or a granted vote
             * restarts the election timer. A higher term alone (say a candidate with a stale
             * log whose vote we refuse) must not, or a faster-ticking stale candidate can keep
             * the up-to-date servers from ever timing out. */
            unsigned elapsed = r->election_elapsed;
            become_follower(r, m->term, 0);
            r->election_elapsed = elapsed;
        }
    } else if (m->term < r->term) {
        if ((r->cfg.check_quorum || r->cfg.pre_vote) &&
            (m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_APP)) {
            /* tell a stale leader about the new term so it steps down (thesis §9.6) */
            send_simple(r, RAFT_MSG_APP_RESP, m->from, r->term, false, 0);
        } else if (m->type == RAFT_MSG_PREVOTE) {
            send_simple(r, RAFT_MSG_PREVOTE_RESP, m->from, r->term, true, 0);
        }
        return;
    }
    if (vote_req) {
        handle_vote(r, m);
        return;
    }
    switch (r->role) {
    case RAFT_LEADER:
        step_leader(r, m);
        break;
    case RAFT_CANDIDATE:
    case RAFT_PRECANDIDATE:
        step_candidate(r, m);
        break;
    default:
        step_follower(r, m);
        break;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Ticks                                                                                       */

static bool quorum_active(struct raft *r)
{
    unsigned n = 0;
    for (unsigned i = 0; i < RAFT_NODES_MAX; i++) {
        struct raft_progress *pr = &r->prs[i];
        if (!pr->id)
            continue;
        if (!pr->learner && (pr->recent_active || pr->id == r->id))
            n++;
        if (pr->id != r->id)
            pr->recent_active = false;
    }
    return n >= conf_quorum(&r->conf);
}

static void tick_leader(struct raft *r)
{
    r->heartbeat_elapsed++;
    r->election_elapsed++;
    if (r->election_elapsed >= r->cfg.election_ticks) {
        r->election_elapsed = 0;
        if (r->cfg.check_quorum && !quorum_active(r)) {
            become_follower(r, r->term, 0); /* thesis §6.2 */
            return;
        }
    }
    if (r->transferee && ++r->transfer_elapsed >= r->cfg.election_ticks) {
        r->transferee = 0; /* thesis §3.10: abort after an election timeout */
        r->transfer_elapsed = 0;
    }
    for (unsigned i = 0; i < RAFT_NODES_MAX; i++) {
        struct raft_progress *pr = &r->prs[i];
        if (pr->id && pr->state == PR_SNAPSHOT && ++pr->snapshot_ticks >= r->cfg.election_ticks) {
            pr->state = PR_PROBE; /* the snapshot was probably lost: probe again */
            pr->next = pr->match + 1;
            pr->probe_sent = false;
            pr->pending_snapshot = 0;
        }
    }
    if (r->heartbeat_elapsed >= r->cfg.heartbeat_ticks) {
        r->heartbeat_elapsed = 0;
        bcast_heartbeat(r, r->read_seq);
    }
}

void raft_tick(struct raft *r)
{
    cs_assert(!r->in_ready);
    if (r->role == RAFT_LEADER) {
        tick_leader(r);
    } else {
        r->election_elapsed++;
        if (promotable(r) && r->election_elapsed >= r->timeout) {
            r->election_elapsed = 0;
            campaign(r, r->cfg.pre_vote, false);
        }
    }
    check_invariants(r);
}

/* ------------------------------------------------------------------------------------------ */
/* Client calls                                                                                */

static int leader_append(struct raft *r, uint8_t type, const void *data, uint32_t len,
                         uint64_t *index)
{
    struct raft_entry e = {
        .term = r->term, .index = raft_last_index(r) + 1, .type = type, .len = len, .data = data};
    int rc = log_push(r, &e);
    if (rc)
        return rc;
    r->uncommitted_bytes += len;
    if (index)
        *index = e.index;
    if (type == RAFT_ENTRY_CONF) {
        rc = conf_apply_entry(r, &r->ents[r->ents_n - 1]);
        cs_assert(rc == 0);
    }
    for (unsigned i = 0; i < RAFT_NODES_MAX; i++)
        if (r->prs[i].id && r->prs[i].id != r->id)
            (void)send_append(r, &r->prs[i], false);
    return 0;
}

int raft_propose(struct raft *r, const void *data, uint32_t len, uint64_t *index)
{
    cs_assert(!r->in_ready);
    if (len > RAFT_ENTRY_BYTES_MAX || (len && !data))
        return CS_EINVAL;
    if (r->role != RAFT_LEADER)
        return RAFT_ENOTLEADER;
    if (r->transferee)
        return RAFT_EBUSY;
    if (r->uncommitted_bytes + len > r->cfg.uncommitted_bytes_max && r->uncommitted_bytes > 0)
        return CS_EFULL;
    return leader_append(r, RAFT_ENTRY_NORMAL, data, len, index);
}

int raft_propose_conf(struct raft *r, enum raft_conf_change type, uint64_t node, uint64_t *index)
{
    cs_assert(!r->in_ready);
    if (r->role != RAFT_LEADER)
        return RAFT_ENOTLEADER;
    if (node == 0)
        return CS_EINVAL;
    if (r->transferee || r->conf_index > r->commit || !committed_in_term(r))
        return RAFT_EBUSY;
    struct raft_conf c = r->conf;
    bool voter = raft_conf_is_voter(&c, node), learner = raft_conf_is_learner(&c, node);
    switch (type) {
    case RAFT_CC_ADD_LEARNER:
        if (voter || learner || (unsigned)c.voters_n + c.learners_n >= RAFT_NODES_MAX)
            return CS_EINVAL;
        c.learners[c.learners_n++] = node;
        break;
    case RAFT_CC_PROMOTE: {
        if (!learner)
            return CS_EINVAL;
        const struct raft_progress *pr = pr_find(r, node);
        if (pr->match < r->commit)
            return RAFT_EBUSY; /* thesis §4.2.1: let the learner catch up first */
        unsigned k = 0;
        for (unsigned i = 0; i < c.learners_n; i++)
            if (c.learners[i] != node)
                c.learners[k++] = c.learners[i];
        c.learners_n = (uint8_t)k;
        c.voters[c.voters_n++] = node;
        break;
    }
    case RAFT_CC_REMOVE: {
        if (node == r->id || (!voter && !learner) || (voter && c.voters_n == 1))
            return CS_EINVAL;
        uint64_t *ids = voter ? c.voters : c.learners;
        uint8_t *n = voter ? &c.voters_n : &c.learners_n;
        unsigned k = 0;
        for (unsigned i = 0; i < *n; i++)
            if (ids[i] != node)
                ids[k++] = ids[i];
        *n = (uint8_t)k;
        break;
    }
    default:
        return CS_EINVAL;
    }
    uint8_t buf[RAFT_CONF_BYTES_MAX];
    size_t len = raft_conf_encode(&c, buf);
    int rc = leader_append(r, RAFT_ENTRY_CONF, buf, (uint32_t)len, index);
    if (rc == 0 && maybe_commit(r)) /* a change can shrink the quorum */
        bcast_append(r);
    return rc;
}

int raft_read_index(struct raft *r, uint64_t request_id)
{
    cs_assert(!r->in_ready);
    if (r->role == RAFT_LEADER)
        return read_start(r, request_id, r->id);
    if (r->role != RAFT_FOLLOWER || r->lead == 0)
        return RAFT_ENOTLEADER;
    struct raft_msg *m = msg_new(r, RAFT_MSG_READ_INDEX, r->lead);
    if (!m)
        return CS_EFULL;
    m->context = request_id;
    return 0;
}

void raft_report_snapshot(struct raft *r, uint64_t node, bool ok)
{
    cs_assert(!r->in_ready);
    struct raft_progress *pr = r->role == RAFT_LEADER ? pr_find(r, node) : NULL;
    if (!pr || pr->state != PR_SNAPSHOT || ok)
        return; /* success is learnt from the follower's answer */
    pr->state = PR_PROBE;
    pr->next = pr->match + 1;
    pr->probe_sent = true; /* wait for the next heartbeat round before probing */
    pr->pending_snapshot = 0;
}

int raft_transfer_leader(struct raft *r, uint64_t target)
{
    cs_assert(!r->in_ready);
    if (r->role != RAFT_LEADER)
        return RAFT_ENOTLEADER;
    if (target == r->id || !raft_conf_is_voter(&r->conf, target))
        return CS_EINVAL;
    if (r->transferee == target)
        return 0;
    r->transferee = target;
    r->transfer_elapsed = 0;
    struct raft_progress *pr = pr_find(r, target);
    if (pr->match == raft_last_index(r))
        send_timeout_now(r, target);
    else
        (void)send_append(r, pr, true);
    return 0;
}

/* The configuration as of index (<= last): the newest CONF entry at or before it. */
static struct raft_conf conf_at(const struct raft *r, uint64_t index)
{
    struct raft_conf c = r->snap.conf;
    for (uint64_t i = index; i > r->snap.index; i--) {
        const struct raft_entry *e = raft_entry_at(r, i);
        if (e->type == RAFT_ENTRY_CONF) {
            int rc = raft_conf_decode(e->data, e->len, &c);
            cs_assert(rc == 0);
            break;
        }
    }
    return c;
}

int raft_compact(struct raft *r, uint64_t index, const void *data, uint32_t len)
{
    cs_assert(!r->in_ready);
    if (index <= r->snap.index || index > r->applied || index > r->stable)
        return CS_EINVAL;
    if (len > RAFT_SNAPSHOT_BYTES_MAX || (len && !data))
        return CS_EINVAL;
    uint8_t *d = NULL;
    if (len) {
        d = malloc(len);
        if (!d)
            return -ENOMEM;
        memcpy(d, data, len);
    }
    struct raft_snapshot s = {.index = index, .term = term_or0(r, index), .len = len, .data = d};
    s.conf = conf_at(r, index);
    size_t drop = (size_t)(index - r->snap.index);
    for (size_t i = 0; i < drop; i++)
        entry_free(&r->ents[i]);
    memmove(r->ents, r->ents + drop, (r->ents_n - drop) * sizeof(*r->ents));
    r->ents_n -= drop;
    free((void *)r->snap.data);
    r->snap = s;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Ready                                                                                       */

static struct raft_hard_state hard_state(const struct raft *r)
{
    struct raft_hard_state hs = {.term = r->term, .vote = r->vote, .commit = r->commit};
    return hs;
}

static uint64_t apply_limit(const struct raft *r)
{
    /* apply only what is committed and persisted (or persisted in this batch) */
    uint64_t last = raft_last_index(r);
    return r->commit < last ? r->commit : last;
}

bool raft_has_ready(const struct raft *r)
{
    struct raft_hard_state hs = hard_state(r);
    if (hs.term != r->persisted_hs.term || hs.vote != r->persisted_hs.vote ||
        hs.commit != r->persisted_hs.commit)
        return true;
    return r->snap_install || raft_last_index(r) > r->stable || r->outbox_n > 0 ||
           apply_limit(r) > r->applied || r->ready_reads_n > 0;
}

void raft_ready(struct raft *r, struct raft_ready *rd)
{
    cs_assert(!r->in_ready);
    memset(rd, 0, sizeof(*rd));
    rd->hard_state = hard_state(r);
    rd->hard_state_changed = rd->hard_state.term != r->persisted_hs.term ||
                             rd->hard_state.vote != r->persisted_hs.vote ||
                             rd->hard_state.commit != r->persisted_hs.commit;
    if (r->snap_install)
        rd->snapshot = &r->snap;
    uint64_t last = raft_last_index(r);
    cs_assert(r->stable >= r->snap.index);
    if (last > r->stable) {
        rd->entries = raft_entry_at(r, r->stable + 1);
        rd->entries_n = (size_t)(last - r->stable);
    }
    rd->msgs = r->outbox;
    rd->msgs_n = r->outbox_n;
    uint64_t lim = apply_limit(r);
    if (lim > r->applied) {
        rd->committed = raft_entry_at(r, r->applied + 1);
        rd->committed_n = (size_t)(lim - r->applied);
    }
    rd->reads = r->ready_reads;
    rd->reads_n = r->ready_reads_n;
    r->in_ready = true;
    r->ready_last = last;
    r->ready_applied = lim > r->applied ? lim : r->applied;
}

void raft_advance(struct raft *r)
{
    cs_assert(r->in_ready);
    r->in_ready = false;
    r->persisted_hs = hard_state(r);
    r->snap_install = false;
    r->stable = r->ready_last;
    r->applied = r->ready_applied;
    r->ready_reads_n = 0;
    outbox_clear(r);
    check_invariants(r);
    if (r->role == RAFT_LEADER) {
        struct raft_progress *self = pr_find(r, r->id);
        if (self && r->stable > self->match)
            self->match = r->stable;
        if (self && maybe_commit(r))
            bcast_append(r);
        if (r->conf.voters_n == 1)
            reads_release(r);
    }
}

int raft_ready_persist(const struct raft_ready *rd, const struct raft_storage *st)
{
    int rc;
    if (rd->snapshot && (rc = st->save_snapshot(st->ctx, rd->snapshot)) != 0)
        return rc;
    if (rd->entries_n) {
        if ((rc = st->truncate_suffix(st->ctx, rd->entries[0].index)) != 0)
            return rc;
        if ((rc = st->append(st->ctx, rd->entries, rd->entries_n)) != 0)
            return rc;
    }
    if (rd->hard_state_changed && (rc = st->save_hard_state(st->ctx, &rd->hard_state)) != 0)
        return rc;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Life cycle                                                                                  */

static bool config_valid(const struct raft_config *c)
{
    return c->id != 0 && c->election_ticks >= 2 && c->heartbeat_ticks >= 1 &&
           c->heartbeat_ticks < c->election_ticks && c->inflight_msgs_max >= 1 &&
           c->inflight_msgs_max <= RAFT_INFLIGHT_MAX && c->msg_bytes_max > 0 && c->rand &&
           raft_conf_valid(&c->bootstrap);
}

/* Load a restarted node's state (§5.1: hard state, snapshot, log). */
static int load(struct raft *r, const struct raft_storage *st)
{
    struct raft_hard_state hs;
    struct raft_snapshot s;
    uint64_t last;
    memset(&s, 0, sizeof(s));
    int rc = st->load(st->ctx, &hs, &s, &last);
    if (rc)
        return rc;
    if (last < s.index || last - s.index > RAFT_LOG_ENTRIES_MAX || s.len > RAFT_SNAPSHOT_BYTES_MAX)
        return CS_ECORRUPT;
    if (s.index) {
        if (!raft_conf_valid(&s.conf))
            return CS_ECORRUPT;
        r->snap = s;
        r->snap.data = NULL;
        if (s.len) {
            uint8_t *d = malloc(s.len);
            if (!d)
                return -ENOMEM;
            memcpy(d, s.data, s.len);
            r->snap.data = d;
        }
    }
    for (uint64_t i = s.index + 1; i <= last; i++) {
        struct raft_entry e;
        if ((rc = st->read_entries(st->ctx, i, i, &e)) != 0)
            return rc;
        if (e.index != i || e.len > RAFT_ENTRY_BYTES_MAX)
            return CS_ECORRUPT;
        if (e.type == RAFT_ENTRY_CONF) {
            struct raft_conf c;
            if (raft_conf_decode(e.data, e.len, &c) != 0)
                return CS_ECORRUPT;
        }
        if ((rc = log_push(r, &e)) != 0)
            return rc;
    }
    r->term = hs.term;
    r->vote = hs.vote;
    r->stable = last;
    r->commit = hs.commit < s.index ? s.index : (hs.commit > last ? last : hs.commit);
    r->applied = s.index;
    r->persisted_hs = hs;
    r->snap_install = false;
    return 0;
}

int raft_new(const struct raft_config *cfg, const struct raft_storage *storage, struct raft **out)
{
    *out = NULL;
    if (!config_valid(cfg))
        return CS_EINVAL;
    struct raft *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->cfg = *cfg;
    r->id = cfg->id;
    r->snap.conf = cfg->bootstrap;
    r->prs = calloc(RAFT_NODES_MAX, sizeof(*r->prs));
    int rc = -ENOMEM;
    if (!r->prs || outbox_grow(r) != 0)
        goto fail;
    if (storage && (rc = load(r, storage)) != 0)
        goto fail;
    conf_recompute(r);
    r->role = RAFT_FOLLOWER;
    reset_timeout(r);
    *out = r;
    return 0;
fail:
    raft_free(r);
    return rc;
}

void raft_free(struct raft *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->ents_n; i++)
        entry_free(&r->ents[i]);
    free(r->ents);
    free((void *)r->snap.data);
    if (r->outbox_mem)
        outbox_clear(r);
    free(r->outbox_mem);
    free(r->outbox);
    free(r->prs);
    free(r);
}

enum raft_role raft_role(const struct raft *r)
{
    return (enum raft_role)r->role;
}

uint64_t raft_id(const struct raft *r)
{
    return r->id;
}

uint64_t raft_term(const struct raft *r)
{
    return r->term;
}

uint64_t raft_leader(const struct raft *r)
{
    return r->lead;
}

uint64_t raft_commit(const struct raft *r)
{
    return r->commit;
}

uint64_t raft_applied(const struct raft *r)
{
    return r->applied;
}

const struct raft_snapshot *raft_snapshot(const struct raft *r)
{
    return &r->snap;
}

const struct raft_conf *raft_conf(const struct raft *r)
{
    return &r->conf;
}
