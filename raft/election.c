/* Roles and elections (§5.2, §5.4.1, thesis §9.6, §3.10).
 *
 * Every role change goes through election_reset: a new term clears the vote, the election timer
 * restarts with a new randomized timeout in [election_ticks, 2 * election_ticks) drawn from the
 * injected randomness, a transfer is cancelled, pending reads are dropped and every member's
 * progress is reset. A follower or candidate that hears nothing for its timeout campaigns: with
 * cfg.pre_vote first a PreVote round (thesis §9.6) at term + 1 that changes no term, then the
 * election proper (§5.2). A vote is granted at most once per term and only to a log at least as
 * up-to-date as ours (§5.4.1). A leader starts with a no-op entry of its term (§8) so that
 * commitment and ReadIndex can progress. An election started by TimeoutNow (thesis §3.10)
 * skips PreVote and is marked so that voters honour it despite CheckQuorum. Learners never
 * campaign nor vote (but a voter that an uncommitted configuration removes still campaigns,
 * thesis §4.2.2). While joint (thesis §4.3), a voter of C_old or of C_new campaigns and votes,
 * and an election needs a majority of both. */
#include "raft_int.h"

#include <cstore.h>

#include <errno.h>

void election_reset_timeout(struct raft *r)
{
    uint64_t e = r->cfg.election_ticks;
    r->timeout = (unsigned)(e + r->cfg.rand(r->cfg.rand_ctx) % e);
}

static void election_reset(struct raft *r, uint64_t term)
{
    if (term != r->term) {
        cs_assert(term > r->term);
        r->term = term;
        r->vote = 0;
    }
    r->lead = 0;
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    election_reset_timeout(r);
    r->transferee = 0;
    r->transfer_elapsed = 0;
    r->uncommitted_bytes = 0;
    read_drop(r);
    replication_rx_abort(r); /* a new term or role ends a snapshot transfer being received */
    for (unsigned i = 0; i < RAFT_NODES_MAX; i++)
        if (r->prs[i].id)
            progress_reset(r, &r->prs[i]);
}

void election_become_follower(struct raft *r, uint64_t term, uint64_t lead)
{
    election_reset(r, term);
    r->role = RAFT_FOLLOWER;
    r->lead = lead;
}

bool election_become_leader(struct raft *r)
{
    cs_assert(r->role == RAFT_CANDIDATE);
    /* §8 / thesis §6.4: a no-op entry of the new term, so that commitment (§5.4.2) and
     * ReadIndex can make progress. Without it the leader could never commit (only entries of
     * its term count) nor serve reads, and would hold the term for nothing: if it cannot be
     * appended (log full, no memory), step down and let an election timeout retry. */
    election_reset(r, r->term);
    r->role = RAFT_LEADER;
    r->lead = r->id;
    struct raft_entry e = {.term = r->term, .index = raft_last_index(r) + 1};
    int rc = log_push(r, &e);
    cs_assert(rc == 0 || rc == -ENOMEM || rc == CS_EFULL);
    if (rc != 0) {
        election_become_follower(r, r->term, 0);
        return false;
    }
    return true;
}

/* A voter campaigns; so does a voter of the previous configuration that the latest one, still
 * uncommitted, takes the vote from (thesis §4.2.2: it may be needed until C_new commits, say a
 * removed leader holding the only copy of its removal). Its own vote then counts in no half
 * (election_poll). O(log) in that state only (conf_at). */
bool election_promotable(const struct raft *r)
{
    if (raft_conf_is_voter(&r->conf, r->id))
        return true;
    if (r->conf_index <= r->commit)
        return false;
    struct raft_conf prev = conf_at(r, r->conf_index - 1);
    return raft_conf_is_voter(&prev, r->id);
}

/* §5.2 / thesis §4.3: the votes counted in every half of the configuration (conf_poll). */
enum poll_result election_poll(struct raft *r)
{
    uint32_t granted = 0, rejected = 0;
    for (unsigned i = 0; i < RAFT_NODES_MAX; i++) {
        const struct raft_progress *pr = &r->prs[i];
        if (!pr->id || pr->learner)
            continue;
        granted |= pr->vote == VOTE_GRANTED ? 1u << i : 0;
        rejected |= pr->vote == VOTE_REJECTED ? 1u << i : 0;
    }
    return conf_poll(r, granted, rejected);
}

/* §5.2 election, preceded by a PreVote round when enabled (thesis §9.6). transfer marks an
 * election started by TimeoutNow, which voters honour despite CheckQuorum (thesis §3.10). */
void election_campaign(struct raft *r, bool pre, bool transfer)
{
    if (!election_promotable(r))
        return;
    if (conf_quorum_slots(r, conf_self_bit(r)))
        pre = false; /* our own vote is a quorum: no round to run (and no recursion) */
    uint64_t term;
    uint8_t type;
    if (pre) {
        election_reset(r, r->term);
        r->role = RAFT_PRECANDIDATE;
        term = r->term + 1;
        type = RAFT_MSG_PREVOTE;
    } else {
        election_reset(r, r->term + 1);
        r->role = RAFT_CANDIDATE;
        r->vote = r->id;
        term = r->term;
        type = RAFT_MSG_VOTE;
    }
    /* A pre-vote changes nothing durable and counts our own at once. The vote of a real
     * election counts once the hard state carrying it is on disk (election_vote_persisted): a
     * single voter does not lead before that. */
    struct raft_progress *self = progress_find(r, r->id);
    if (self && pre)
        self->vote = VOTE_GRANTED;                   /* counted only where it votes (conf_poll) */
    cs_assert(!pre || election_poll(r) != POLL_WON); /* a single voter skips PreVote, above */
    for (unsigned i = 0; i < RAFT_NODES_MAX; i++) {
        struct raft_progress *pr = &r->prs[i];
        if (!pr->id || pr->learner || pr->id == r->id)
            continue;
        struct raft_msg *m = outbox_msg_new(r, type, pr->id);
        if (!m)
            continue;
        m->term = term;
        m->index = raft_last_index(r);
        m->log_term = log_last_term(r);
        m->context = transfer ? 1 : 0;
    }
}

/* §5.2 count of a (pre)candidate's votes after a change: the round is won (a pre-candidate
 * then campaigns for real, a candidate leads), lost (back to follower) or still open. */
void election_tally(struct raft *r)
{
    cs_assert(r->role == RAFT_CANDIDATE || r->role == RAFT_PRECANDIDATE);
    switch (election_poll(r)) {
    case POLL_WON:
        if (r->role == RAFT_PRECANDIDATE) {
            election_campaign(r, false, false);
        } else if (election_become_leader(r)) {
            replication_bcast_append(r); /* the empty entry, to followers and learners */
        }
        break;
    case POLL_LOST:
        election_become_follower(r, r->term, 0);
        break;
    default:
        break;
    }
}

/* §5.1 with §5.2: the hard state carrying a candidate's vote for itself was persisted (called by
 * raft_advance). Only now does that vote count, as etcd delivers a candidate's vote for itself
 * after the append that stores it. Counted earlier, a candidate whose own vote is a quorum (a
 * single voter) would lead, accept proposals and queue the term's first entry for a term a
 * crash could make it forget; restarted in the term before, it could vote for another
 * candidate of that term, and the term would have two leaders. Other voters' grants cannot
 * arrive earlier: the requests leave in the batch that persists the vote. */
void election_vote_persisted(struct raft *r)
{
    if (r->role != RAFT_CANDIDATE)
        return;
    cs_assert(r->vote == r->id);
    cs_assert(r->persisted_hs.term == r->term);
    cs_assert(r->persisted_hs.vote == r->id);
    struct raft_progress *self = progress_find(r, r->id);
    if (!self || self->vote != VOTE_NONE)
        return; /* not a member (thesis §4.2.2: its vote counts nowhere), or counted already */
    self->vote = VOTE_GRANTED;
    election_tally(r);
}

/* thesis §9.6: a server that heard from a leader within the election timeout (or leads itself)
 * refuses pre-votes, with or without CheckQuorum: the cluster has a leader, so a pre-candidate
 * would only disrupt it. */
static bool election_leader_heard(const struct raft *r)
{
    return r->lead != 0 && r->election_elapsed < r->cfg.election_ticks;
}

/* §5.2, §5.4.1, thesis §9.6: grant a (pre)vote at most once per term, to an up-to-date log; no
 * pre-vote while a leader is heard from. */
void election_handle_vote(struct raft *r, const struct raft_msg *m)
{
    bool pre = m->type == RAFT_MSG_PREVOTE;
    uint8_t resp = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
    bool can = r->vote == m->from || (r->vote == 0 && r->lead == 0) || (pre && m->term > r->term);
    if (pre && election_leader_heard(r))
        can = false;
    if (can && log_up_to_date(r, m->index, m->log_term)) {
        outbox_send_simple(r, resp, m->from, m->term, false, 0);
        if (!pre) {
            r->election_elapsed = 0;
            r->vote = m->from;
        }
    } else {
        outbox_send_simple(r, resp, m->from, r->term, true, 0);
    }
}
