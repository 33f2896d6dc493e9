/* The Raft core: message dispatch, ticks, client calls, the outbox, the ready batch and the life
 * cycle of a node (see raft.h for the interface and the section references, raft_int.h for the
 * state and the other files of raft/).
 *
 * raft_step checks a message's fields (a malformed one is dropped like a lost one), applies the
 * term rules of Figure 2 (a higher term makes us a follower; a stale one is answered so that
 * its sender steps down, thesis §9.6; while a leader is heard from, vote requests of a higher
 * term are ignored, thesis §4.2.3 / §6.2) and dispatches by role to election.c, replication.c
 * and read.c. raft_tick drives elections, heartbeats, CheckQuorum (thesis §6.2), the transfer
 * timeout (thesis §3.10) and snapshot retries. Client calls: proposals (§5.3), single-server
 * membership changes (thesis §4.1), ReadIndex (thesis §6.4), leadership transfer (thesis §3.10).
 *
 * Persistence ordering: messages leave only in a ready batch, after the caller persisted the
 * batch's hard state and entries, so a vote or an ack is never sent before it is durable
 * (§5.1). The leader counts its own log for commitment only up to `stable` (thesis §10.2.1
 * allows writing in parallel; we keep the simpler rule), and a candidate counts its own vote
 * only from the raft_advance of the batch that persisted it, so no node leads (nor accepts a
 * proposal in) a term that a crash could make it forget. The outbox holds the messages of the
 * next batch (at most RAFT_OUTBOX_MAX, grown by doubling, never between raft_ready and
 * raft_advance); each owns the block holding its entries or snapshot data. */
#include "raft_int.h"

#include <cstore.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

struct raft_msg *outbox_msg_new(struct raft *r, uint8_t type, uint64_t to)
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

void outbox_send_simple(struct raft *r, uint8_t type, uint64_t to, uint64_t term, bool reject,
                        uint64_t index)
{
    struct raft_msg *m = outbox_msg_new(r, type, to);
    if (!m)
        return;
    m->term = term;
    m->reject = reject;
    m->index = index;
}

void outbox_drop_acks_from(struct raft *r, uint64_t index)
{
    cs_assert(!r->in_ready);
    size_t k = 0;
    for (size_t i = 0; i < r->outbox_n; i++) {
        const struct raft_msg *m = &r->outbox[i];
        if (m->type == RAFT_MSG_APP_RESP && !m->reject && m->index >= index) {
            free(r->outbox_mem[i]); /* like a lost message; the leader asks again */
            continue;
        }
        r->outbox[k] = r->outbox[i];
        r->outbox_mem[k] = r->outbox_mem[i];
        k++;
    }
    r->outbox_n = k;
}

void outbox_drop_chunk_acks(struct raft *r, uint64_t transfer)
{
    cs_assert(!r->in_ready);
    size_t k = 0;
    for (size_t i = 0; i < r->outbox_n; i++) {
        const struct raft_msg *m = &r->outbox[i];
        if (m->type == RAFT_MSG_SNAP_RESP && !m->reject && m->context == transfer) {
            free(r->outbox_mem[i]);
            continue;
        }
        r->outbox[k] = r->outbox[i];
        r->outbox_mem[k] = r->outbox_mem[i];
        k++;
    }
    r->outbox_n = k;
}

static void outbox_clear(struct raft *r)
{
    for (size_t i = 0; i < r->outbox_n; i++) {
        free(r->outbox_mem[i]);
        r->outbox_mem[i] = NULL;
    }
    r->outbox_n = 0;
}

static void step_leader(struct raft *r, const struct raft_msg *m)
{
    struct raft_progress *pr = progress_find(r, m->from);
    if (!pr)
        return; /* not a member */
    switch (m->type) {
    case RAFT_MSG_APP_RESP:
        replication_handle_append_resp(r, pr, m);
        break;
    case RAFT_MSG_SNAP_RESP:
        replication_handle_snapshot_resp(r, pr, m);
        break;
    case RAFT_MSG_READ_INDEX:
        if (read_start(r, m->context, m->from) != 0) {
            struct raft_msg *resp = outbox_msg_new(r, RAFT_MSG_READ_INDEX_RESP, m->from);
            if (resp) {
                resp->reject = true;
                resp->context = m->context;
            }
        }
        break;
    case RAFT_MSG_HEARTBEAT_RESP:
        pr->recent_active = true;
        pr->probe_sent = false;
        if (pr->state == PR_REPLICATE && progress_infl_full(r, pr))
            progress_infl_free_to(pr, pr->infl[pr->infl_start].index); /* let one more through */
        /* Behind: send even an empty append. In REPLICATE, next may already point past
         * entries whose append was lost; only a probe at next - 1 makes the follower reject
         * and the leader back up. Without it, a lost append with no later proposal stalls the
         * follower for good. */
        if (pr->match < raft_last_index(r))
            (void)replication_send_append(r, pr, true);
        else if (pr->id == r->transferee)
            replication_send_timeout_now(r, pr->id); /* caught up, still ours: it was lost */
        if (!pr->learner)
            read_ack(r, progress_slot(r, pr), m->context);
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
        election_become_follower(r, m->term, m->from);
        replication_handle_append(r, m);
        return;
    case RAFT_MSG_HEARTBEAT:
        election_become_follower(r, m->term, m->from);
        replication_handle_heartbeat(r, m);
        return;
    case RAFT_MSG_SNAP:
        election_become_follower(r, m->term, m->from);
        replication_handle_snapshot(r, m);
        return;
    default:
        break;
    }
    if (m->type != want)
        return;
    struct raft_progress *pr = progress_find(r, m->from);
    if (!pr || pr->learner)
        return;
    if (pr->vote == VOTE_NONE)
        pr->vote = m->reject ? VOTE_REJECTED : VOTE_GRANTED;
    election_tally(r);
}

static void step_follower(struct raft *r, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_APP:
        r->election_elapsed = 0;
        r->lead = m->from;
        replication_handle_append(r, m);
        break;
    case RAFT_MSG_HEARTBEAT:
        r->election_elapsed = 0;
        r->lead = m->from;
        replication_handle_heartbeat(r, m);
        break;
    case RAFT_MSG_SNAP:
        r->election_elapsed = 0;
        r->lead = m->from;
        replication_handle_snapshot(r, m);
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        /* thesis §3.10: start an election at once, skipping PreVote */
        election_campaign(r, false, true);
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

/* A snapshot chunk's fields agree with each other (raft.h "Snapshots"). */
static bool chunk_sane(const struct raft_msg *m)
{
    const struct raft_snapshot *s = &m->snapshot;
    const struct raft_chunk *c = &m->chunk;
    if (!m->has_snapshot || !raft_conf_valid(&s->conf) || s->index == 0 ||
        s->bytes > RAFT_SNAPSHOT_BYTES_MAX)
        return false;
    if (c->transfer == 0 || c->len > RAFT_CHUNK_BYTES_MAX || (c->len && !c->data))
        return false;
    if (c->offset > s->bytes || c->len > s->bytes - c->offset)
        return false;
    if (c->last != (c->offset + c->len == s->bytes) || (c->len == 0 && s->bytes != 0))
        return false;
    return true;
}

static bool msg_sane(const struct raft *r, const struct raft_msg *m)
{
    if (m->type < RAFT_MSG_APP || m->type >= RAFT_MSG_TYPE_END)
        return false;
    if (m->from == 0 || m->from == r->id)
        return false;
    if (m->type == RAFT_MSG_SNAP && !chunk_sane(m))
        return false;
    if (m->type == RAFT_MSG_SNAP_RESP && (m->context == 0 || m->index == 0))
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

/* The log invariants of raft_int.h and log.c; cheap, checked after every input. */
static void check_invariants(const struct raft *r)
{
    uint64_t last = raft_last_index(r);
    cs_assert(r->snap.index <= r->applied);
    cs_assert(r->applied <= r->commit);
    cs_assert(r->commit <= last);
    cs_assert(r->snap.index <= r->stable);
    cs_assert(r->stable <= last);
    cs_assert(r->role != RAFT_LEADER || r->lead == r->id);
    /* thesis §4.2.2: a leader outside its configuration leads until its removal commits */
    cs_assert(r->role != RAFT_LEADER || raft_conf_is_voter(&r->conf, r->id) ||
              r->conf_index > r->commit);
    cs_assert(r->rx.buf_len <= RAFT_CHUNK_RX_BYTES_MAX);
    cs_assert(!r->rx.active || r->role == RAFT_FOLLOWER);
}

static void step(struct raft *r, const struct raft_msg *m);
static void leader_conf_follow_up(struct raft *r);

int raft_step(struct raft *r, const struct raft_msg *m)
{
    cs_assert(!r->in_ready);
    if (m->to != r->id)
        return CS_EINVAL;
    step(r, m);
    leader_conf_follow_up(r);
    check_invariants(r);
    return 0;
}

static void step(struct raft *r, const struct raft_msg *m)
{
    if (!msg_sane(r, m)) {
        r->msgs_refused++;
        return;
    }
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
            election_become_follower(r, m->term, m->from);
        } else {
            /* Figure 2, rules for followers: only a current leader's message or a granted vote
             * restarts the election timer. A higher term alone (say a candidate with a stale
             * log whose vote we refuse) must not, or a faster-ticking stale candidate can keep
             * the up-to-date servers from ever timing out. */
            unsigned elapsed = r->election_elapsed;
            election_become_follower(r, m->term, 0);
            r->election_elapsed = elapsed;
        }
    } else if (m->term < r->term) {
        if ((r->cfg.check_quorum || r->cfg.pre_vote) &&
            (m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_APP ||
             m->type == RAFT_MSG_SNAP)) {
            /* tell a stale leader about the new term so it steps down (thesis §9.6) */
            outbox_send_simple(r, RAFT_MSG_APP_RESP, m->from, r->term, false, 0);
        } else if (m->type == RAFT_MSG_PREVOTE) {
            outbox_send_simple(r, RAFT_MSG_PREVOTE_RESP, m->from, r->term, true, 0);
        } else if (m->type == RAFT_MSG_VOTE) {
            /* Figure 2, RequestVote receiver 1: refuse, with our term. etcd drops it; then a
             * candidate whose terms trail those a disruptive server (one that missed its
             * demotion, without PreVote) keeps raising never learns of them, and nobody who
             * could win the election ever does (raft-sim seed 47576, 3 nodes) */
            outbox_send_simple(r, RAFT_MSG_VOTE_RESP, m->from, r->term, true, 0);
        }
        return;
    }
    if (vote_req) {
        election_handle_vote(r, m);
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

/* thesis §6.2: were a quorum of voters (of both halves while joint, thesis §4.3) heard from
 * since the last round? Starts the next round. */
static bool quorum_active(struct raft *r)
{
    uint32_t heard = conf_self_bit(r);
    for (unsigned i = 0; i < RAFT_NODES_MAX; i++) {
        struct raft_progress *pr = &r->prs[i];
        if (!pr->id || pr->id == r->id)
            continue;
        if (pr->recent_active)
            heard |= 1u << i;
        pr->recent_active = false;
    }
    return conf_quorum_slots(r, heard);
}

static void tick_leader(struct raft *r)
{
    r->heartbeat_elapsed++;
    r->election_elapsed++;
    if (r->election_elapsed >= r->cfg.election_ticks) {
        r->election_elapsed = 0;
        if (r->cfg.check_quorum && !quorum_active(r)) {
            election_become_follower(r, r->term, 0); /* thesis §6.2 */
            return;
        }
    }
    if (r->transferee && ++r->transfer_elapsed >= r->cfg.election_ticks) {
        r->transferee = 0; /* thesis §3.10: abort after an election timeout */
        r->transfer_elapsed = 0;
    }
    for (unsigned i = 0; i < RAFT_NODES_MAX; i++)
        if (r->prs[i].id && r->prs[i].state == PR_SNAPSHOT)
            replication_tick_snapshot(r, &r->prs[i]); /* resend chunks, or start over */
    if (r->heartbeat_elapsed >= r->cfg.heartbeat_ticks) {
        r->heartbeat_elapsed = 0;
        replication_bcast_heartbeat(r, r->read_seq);
    }
}

void raft_tick(struct raft *r)
{
    cs_assert(!r->in_ready);
    if (r->role == RAFT_LEADER) {
        tick_leader(r);
    } else {
        r->election_elapsed++;
        if (election_promotable(r) && r->election_elapsed >= r->timeout) {
            r->election_elapsed = 0;
            election_campaign(r, r->cfg.pre_vote, false);
        }
    }
    leader_conf_follow_up(r); /* a transfer that timed out no longer holds back the leave */
    check_invariants(r);
}

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
            (void)replication_send_append(r, &r->prs[i], false);
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

/* thesis §4.1, §4.3: whether the leader may append a configuration change now: no change
 * uncommitted, not joint, an entry of its term committed (the raft-dev 2015 fix), no transfer. */
static bool conf_change_allowed(const struct raft *r)
{
    return !r->transferee && r->conf_index <= r->commit && !raft_conf_is_joint(&r->conf) &&
           log_committed_in_term(r);
}

static int append_conf(struct raft *r, const struct raft_conf *c, uint64_t *index)
{
    uint8_t buf[RAFT_CONF_BYTES_MAX];
    size_t len = raft_conf_encode(c, buf);
    int rc = leader_append(r, RAFT_ENTRY_CONF, buf, (uint32_t)len, index);
    if (rc == 0 && replication_maybe_commit(r)) /* a change can shrink the quorum */
        replication_bcast_append(r);
    return rc;
}

static bool ids_equal_sets(const uint64_t *a, unsigned an, const uint64_t *b, unsigned bn)
{
    if (an != bn)
        return false;
    for (unsigned i = 0; i < an; i++) {
        bool found = false;
        for (unsigned k = 0; k < bn && !found; k++)
            found = a[i] == b[k];
        if (!found)
            return false;
    }
    return true;
}

/* Voters in one configuration and not in the other, both ways (thesis §4.1: one at most for a
 * single-server change). */
static unsigned voters_changed(const struct raft_conf *a, const struct raft_conf *b)
{
    unsigned n = 0;
    for (unsigned i = 0; i < a->voters_n; i++)
        n += !raft_conf_is_voter(b, a->voters[i]);
    for (unsigned i = 0; i < b->voters_n; i++)
        n += !raft_conf_is_voter(a, b->voters[i]);
    return n;
}

int raft_propose_members(struct raft *r, const struct raft_conf *target, unsigned flags,
                         uint64_t *index)
{
    cs_assert(!r->in_ready);
    if (r->role != RAFT_LEADER)
        return RAFT_ENOTLEADER;
    if (!raft_conf_valid(target) || raft_conf_is_joint(target) || (flags & ~RAFT_CONF_JOINT))
        return CS_EINVAL;
    if (!conf_change_allowed(r))
        return RAFT_EBUSY;
    const struct raft_conf *cur = &r->conf;
    if (ids_equal_sets(cur->voters, cur->voters_n, target->voters, target->voters_n) &&
        ids_equal_sets(cur->learners, cur->learners_n, target->learners, target->learners_n))
        return CS_EINVAL; /* nothing changes */
    for (unsigned i = 0; i < target->voters_n; i++) {
        const struct raft_progress *pr = progress_find(r, target->voters[i]);
        if (pr && pr->learner && pr->match < r->commit)
            return RAFT_EBUSY; /* thesis §4.2.1: let the learner catch up first */
    }
    if (voters_changed(cur, target) <= 1 && !(flags & RAFT_CONF_JOINT))
        return append_conf(r, target, index); /* thesis §4.1: one entry */
    struct raft_conf joint;
    if (!conf_enter(cur, target, &joint))
        return CS_EINVAL; /* more than RAFT_NODES_MAX members with the voters in force */
    return append_conf(r, &joint, index); /* thesis §4.3: C_old,new; C_new follows */
}

int raft_propose_conf(struct raft *r, enum raft_conf_change type, uint64_t node, uint64_t *index)
{
    cs_assert(!r->in_ready);
    if (r->role != RAFT_LEADER)
        return RAFT_ENOTLEADER;
    if (node == 0)
        return CS_EINVAL;
    if (!conf_change_allowed(r))
        return RAFT_EBUSY;
    struct raft_conf c = r->conf;
    bool voter = raft_conf_is_voter(&c, node), learner = raft_conf_is_learner(&c, node);
    switch (type) {
    case RAFT_CC_ADD_LEARNER:
        if (voter || learner || (unsigned)c.voters_n + c.learners_n >= RAFT_NODES_MAX)
            return CS_EINVAL;
        c.learners[c.learners_n++] = node;
        break;
    case RAFT_CC_PROMOTE:
        if (!learner)
            return CS_EINVAL;
        for (unsigned i = 0; i < c.learners_n; i++)
            if (c.learners[i] == node)
                c.learners[i] = c.learners[--c.learners_n];
        c.voters[c.voters_n++] = node;
        break;
    case RAFT_CC_REMOVE: {
        if ((!voter && !learner) || (voter && c.voters_n == 1))
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
    return raft_propose_members(r, &c, 0, index);
}

/* After each input, on a leader (thesis §4.3, §4.2.2): once C_old,new is committed, append C_new
 * (auto-leave, etcd's JointImplicit); once a configuration that does not make this node a voter
 * is committed, step down. Waits for an entry of the leader's term to commit first (thesis
 * §4.1, as for any change) and for a transfer to end. A failed append is retried at the next
 * input. */
static void leader_conf_follow_up(struct raft *r)
{
    if (r->role != RAFT_LEADER)
        return;
    if (!raft_conf_is_voter(&r->conf, r->id) && r->conf_index <= r->commit) {
        election_become_follower(r, r->term, 0); /* thesis §4.2.2: removed, C_new committed */
        return;
    }
    if (!raft_conf_is_joint(&r->conf) || r->transferee || !log_committed_in_term(r))
        return;
    if (r->conf_index > r->commit)
        return; /* thesis §4.3: C_new only once C_old,new is committed */
    struct raft_conf next;
    conf_leave(&r->conf, &next);
    (void)append_conf(r, &next, NULL);
}

void raft_report_snapshot(struct raft *r, uint64_t node, bool ok)
{
    cs_assert(!r->in_ready);
    struct raft_progress *pr = r->role == RAFT_LEADER ? progress_find(r, node) : NULL;
    if (!pr || pr->state != PR_SNAPSHOT || ok)
        return; /* success is learnt from the follower's answer */
    replication_abort_snapshot(r, pr);
    pr->probe_sent = true; /* wait for the next heartbeat round before probing */
}

int raft_transfer_leader(struct raft *r, uint64_t target)
{
    cs_assert(!r->in_ready);
    if (r->role != RAFT_LEADER)
        return RAFT_ENOTLEADER;
    if (target == r->id || !raft_conf_is_voter(&r->conf, target))
        return CS_EINVAL;
    /* A repeated request for the same target keeps the first one's deadline but sends again:
     * the TimeoutNow or the append that would catch the target up may have been lost. */
    if (r->transferee != target) {
        r->transferee = target;
        r->transfer_elapsed = 0;
    }
    struct raft_progress *pr = progress_find(r, target);
    if (pr->match == raft_last_index(r))
        replication_send_timeout_now(r, target);
    else
        (void)replication_send_append(r, pr, true);
    return 0;
}

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

/* The last index of the committed entries the next ready hands out: up to lim, within
 * cfg.committed_bytes_max data bytes but at least one entry. O(entries handed out). */
static uint64_t apply_cap(const struct raft *r, uint64_t lim)
{
    if (!r->cfg.committed_bytes_max || lim <= r->applied)
        return lim;
    uint64_t bytes = raft_entry_at(r, r->applied + 1)->len, hi = r->applied + 1;
    while (hi < lim) {
        uint64_t len = raft_entry_at(r, hi + 1)->len;
        if (bytes + len > r->cfg.committed_bytes_max)
            break;
        bytes += len;
        hi++;
    }
    cs_assert(hi > r->applied);
    cs_assert(hi <= lim);
    return hi;
}

/* Received snapshot bytes wait for a save (or a transfer began: the storage must discard its
 * partial snapshot). */
static bool rx_pending(const struct raft *r)
{
    return r->rx.buf_len > 0 || r->rx.buf_start;
}

bool raft_has_ready(const struct raft *r)
{
    struct raft_hard_state hs = hard_state(r);
    if (hs.term != r->persisted_hs.term || hs.vote != r->persisted_hs.vote ||
        hs.commit != r->persisted_hs.commit)
        return true;
    return r->snap_install || rx_pending(r) || raft_last_index(r) > r->stable || r->outbox_n > 0 ||
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
    if (rx_pending(r)) {
        r->rx.out.transfer = r->rx.transfer;
        r->rx.out.offset = r->rx.buf_offset;
        r->rx.out.len = r->rx.buf_len;
        r->rx.out.data = r->rx.buf;
        r->rx.out.last = r->rx.buf_offset + r->rx.buf_len == r->rx.snap.bytes;
        rd->chunk_of = &r->rx.snap;
        rd->chunk = &r->rx.out;
    }
    cs_assert(!r->snap_install || rd->chunk); /* an install comes with its last chunk */
    uint64_t last = raft_last_index(r);
    cs_assert(r->stable >= r->snap.index);
    if (last > r->stable) {
        rd->entries = raft_entry_at(r, r->stable + 1);
        rd->entries_n = (size_t)(last - r->stable);
    }
    rd->msgs = r->outbox;
    rd->msgs_n = r->outbox_n;
    uint64_t lim = apply_cap(r, apply_limit(r));
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
    free(r->rx.buf); /* saved */
    r->rx.buf = NULL;
    r->rx.buf_len = 0;
    r->rx.buf_start = false;
    r->stable = r->ready_last;
    r->applied = r->ready_applied;
    r->ready_reads_n = 0;
    outbox_clear(r);
    check_invariants(r);
    election_vote_persisted(r); /* a candidate's own vote is on disk now: it counts */
    if (r->role == RAFT_LEADER) {
        struct raft_progress *self = progress_find(r, r->id); /* none: outside (thesis §4.2.2) */
        if (self && r->stable > self->match)
            self->match = r->stable;
        if (replication_maybe_commit(r))
            replication_bcast_append(r);
        read_release(r); /* a single voter is its own quorum */
        leader_conf_follow_up(r);
    }
}

int raft_ready_persist(const struct raft_ready *rd, const struct raft_storage *st)
{
    struct raft_batch b = {.chunk_of = rd->chunk_of,
                           .chunk = rd->chunk,
                           .snapshot = rd->snapshot,
                           .entries = rd->entries,
                           .entries_n = rd->entries_n,
                           .hard_state = rd->hard_state_changed ? &rd->hard_state : NULL};
    if (!b.chunk && !b.snapshot && !b.entries_n && !b.hard_state)
        return 0; /* nothing durable in this batch */
    cs_assert(!b.entries_n || b.entries);
    return st->save(st->ctx, &b);
}

static bool config_valid(const struct raft_config *c)
{
    return c->id != 0 && c->election_ticks >= 2 && c->heartbeat_ticks >= 1 &&
           c->heartbeat_ticks < c->election_ticks && c->inflight_msgs_max >= 1 &&
           c->inflight_msgs_max <= RAFT_INFLIGHT_MAX && c->msg_bytes_max > 0 && c->rand &&
           c->log_entries_max <= RAFT_LOG_ENTRIES_MAX && raft_conf_valid(&c->bootstrap) &&
           c->snapshot_chunk_bytes <= RAFT_CHUNK_BYTES_MAX &&
           c->snapshot_inflight_max <= RAFT_INFLIGHT_MAX;
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
    if (storage && (rc = log_load(r, storage)) != 0)
        goto fail;
    conf_recompute(r);
    r->role = RAFT_FOLLOWER;
    election_reset_timeout(r);
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
        log_entry_free(&r->ents[i]);
    free(r->ents);
    free(r->rx.buf);
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

uint64_t raft_msgs_refused(const struct raft *r)
{
    return r->msgs_refused;
}

const struct raft_snapshot *raft_snapshot(const struct raft *r)
{
    return &r->snap;
}

const struct raft_conf *raft_conf(const struct raft *r)
{
    return &r->conf;
}
