/* What the leader knows of each member, and the flow control of appends (thesis §3.5, etcd's
 * Progress).
 *
 * One slot per member of the configuration in force (r->prs, RAFT_NODES_MAX slots; id 0 =
 * unused; the leader has a slot of its own whose match is its persisted log, `stable`). Per
 * member: matchIndex and nextIndex (§5.3), its vote during an election, whether it was heard
 * from in the last election timeout (CheckQuorum, thesis §6.2), and a state:
 * - PR_PROBE: the leader does not know where the logs match; one append at a time, and one per
 *   heartbeat period, until an answer says where (thesis §3.5);
 * - PR_REPLICATE: the logs match up to `match`; appends are pipelined, bounded by a ring of
 *   in-flight appends (cfg.inflight_msgs_max messages, cfg.inflight_bytes_max bytes);
 * - PR_SNAPSHOT: an InstallSnapshot (§7) is out; nothing else is sent until it is answered or
 *   an election timeout passed (raft.c's tick).
 * A slot keeps what is known of a member across configuration changes (progress_rebuild). */
#include "raft_int.h"

struct raft_progress *progress_find(struct raft *r, uint64_t id)
{
    for (unsigned i = 0; i < RAFT_NODES_MAX; i++)
        if (r->prs[i].id == id && id != 0)
            return &r->prs[i];
    return NULL;
}

unsigned progress_slot(const struct raft *r, const struct raft_progress *pr)
{
    return (unsigned)(pr - r->prs);
}

void progress_reset(struct raft *r, struct raft_progress *pr)
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

void progress_infl_add(struct raft *r, struct raft_progress *pr, uint64_t index, uint64_t bytes)
{
    cs_assert(pr->infl_n < r->cfg.inflight_msgs_max);
    unsigned at = (pr->infl_start + pr->infl_n) % RAFT_INFLIGHT_MAX;
    pr->infl[at].index = index;
    pr->infl[at].bytes = bytes;
    pr->infl_n++;
    pr->infl_bytes += bytes;
}

/* Forget the appends acknowledged up to index (all of them when they carry smaller indexes). */
void progress_infl_free_to(struct raft_progress *pr, uint64_t index)
{
    while (pr->infl_n > 0 && pr->infl[pr->infl_start].index <= index) {
        pr->infl_bytes -= pr->infl[pr->infl_start].bytes;
        pr->infl_start = (pr->infl_start + 1) % RAFT_INFLIGHT_MAX;
        pr->infl_n--;
    }
}

bool progress_infl_full(const struct raft *r, const struct raft_progress *pr)
{
    if (pr->infl_n >= r->cfg.inflight_msgs_max)
        return true;
    return r->cfg.inflight_bytes_max && pr->infl_bytes >= r->cfg.inflight_bytes_max;
}

void progress_become_probe(struct raft *r, struct raft_progress *pr)
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

void progress_become_replicate(struct raft_progress *pr)
{
    pr->state = PR_REPLICATE;
    pr->next = pr->match + 1;
    pr->probe_sent = false;
    pr->infl_n = 0;
    pr->infl_start = 0;
    pr->infl_bytes = 0;
}

bool progress_paused(const struct raft *r, const struct raft_progress *pr)
{
    switch (pr->state) {
    case PR_PROBE:
        return pr->probe_sent;
    case PR_REPLICATE:
        return progress_infl_full(r, pr);
    default:
        return true;
    }
}

/* A rejection of the append that followed `rejected`; hint is where the follower suggests to
 * continue. Returns false for a stale rejection (etcd MaybeDecrTo). */
bool progress_decrease_to(struct raft_progress *pr, uint64_t rejected, uint64_t hint)
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
void progress_rebuild(struct raft *r, const struct raft_conf *c)
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
            old[i].learner = !raft_conf_is_voter(c, old[i].id);
    }
    /* the members: C_new's voters, the learners, and while joint C_old's voters (thesis §4.3) */
    unsigned listed = (unsigned)c->voters_n + c->learners_n + c->old_n;
    for (unsigned k = 0; k < listed; k++) {
        uint64_t id = k < c->voters_n                   ? c->voters[k]
                      : k < c->voters_n + c->learners_n ? c->learners[k - c->voters_n]
                                                        : c->old[k - c->voters_n - c->learners_n];
        bool learner = !raft_conf_is_voter(c, id);
        if (progress_find(r, id))
            continue;
        unsigned slot = 0;
        while (slot < RAFT_NODES_MAX && old[slot].id)
            slot++;
        cs_assert(slot < RAFT_NODES_MAX);
        old[slot].id = id;
        old[slot].learner = learner;
        progress_reset(r, &old[slot]);
    }
}
