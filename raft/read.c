/* Linearizable reads by ReadIndex (thesis §6.4, §6.4.1).
 *
 * A read that reaches the leader before it committed an entry of its term waits in the queue
 * (etcd's pendingReadIndexMessages) until that commit (step 1); the leader then records the
 * commit index as the read index (step 2) and confirms it is still leader by a heartbeat round
 * (step 3): each pending read notes the round (`seq`) started for it and the member slots that
 * acknowledged a round at least as new; a quorum of voters (of both halves while joint, thesis
 * §4.3) releases it, in arrival order. The
 * read is then served once the state machine applied its index (step 4, the caller's). A
 * follower forwards a read to the leader (thesis §6.4.1) and gets the index back. Pending reads
 * are a ring of RAFT_READS_MAX; they are dropped when the leader steps down (the caller retries).
 */
#include "raft_int.h"

#include <cstore.h>

void read_drop(struct raft *r)
{
    r->reads_start = 0;
    r->reads_n = 0;
}

/* Release the reads at the head of the queue that a quorum confirmed (thesis §6.4 step 3). */
void read_release(struct raft *r)
{
    while (r->reads_n > 0) {
        struct raft_read_pending *p = &r->reads[r->reads_start];
        if (p->await_commit || !conf_quorum_slots(r, p->acks))
            return;
        if (p->origin != r->id) {
            struct raft_msg *m = outbox_msg_new(r, RAFT_MSG_READ_INDEX_RESP, p->origin);
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

void read_ack(struct raft *r, unsigned slot, uint64_t context)
{
    for (unsigned k = 0; k < r->reads_n; k++) {
        struct raft_read_pending *p = &r->reads[(r->reads_start + k) % RAFT_READS_MAX];
        if (p->seq <= context && !p->await_commit)
            p->acks |= 1u << slot;
    }
    read_release(r);
}

/* thesis §6.4 step 1 reached: the reads queued before it get the commit index now (it covers
 * every entry committed before they arrived, §5.4 leader completeness) and a heartbeat round
 * started now (step 3). They sit at the head of the ring: they arrived first. */
void read_commit_in_term(struct raft *r)
{
    cs_assert(r->role == RAFT_LEADER);
    if (r->reads_n == 0 || !r->reads[r->reads_start].await_commit || !log_committed_in_term(r))
        return;
    uint64_t seq = ++r->read_seq;
    uint32_t self_bit = conf_self_bit(r);
    for (unsigned k = 0; k < r->reads_n; k++) {
        struct raft_read_pending *p = &r->reads[(r->reads_start + k) % RAFT_READS_MAX];
        if (!p->await_commit)
            break;
        p->await_commit = false;
        p->index = r->commit;
        p->seq = seq;
        p->acks = self_bit;
    }
    read_release(r); /* a single voter is its own quorum */
    if (r->reads_n)
        replication_bcast_heartbeat(r, r->read_seq);
}

/* thesis §6.4 steps 1-2 on the leader, for itself or for a follower (origin). */
int read_start(struct raft *r, uint64_t request_id, uint64_t origin)
{
    cs_assert(r->role == RAFT_LEADER);
    if (r->reads_n + r->ready_reads_n >= RAFT_READS_MAX)
        return CS_EFULL;
    struct raft_read_pending *p = &r->reads[(r->reads_start + r->reads_n) % RAFT_READS_MAX];
    p->request_id = request_id;
    p->origin = origin;
    if (!log_committed_in_term(r)) { /* thesis §6.4 step 1: wait for read_commit_in_term */
        p->await_commit = true;
        p->index = 0;
        p->seq = 0;
        p->acks = 0;
        r->reads_n++;
        return 0;
    }
    p->await_commit = false;
    p->index = r->commit;
    p->seq = ++r->read_seq;
    p->acks = conf_self_bit(r); /* 0 for a leader outside C_new (thesis §4.2.2) */
    r->reads_n++;
    read_release(r); /* a single voter is its own quorum */
    if (r->reads_n)
        replication_bcast_heartbeat(r, r->read_seq);
    return 0;
}

int raft_read_index(struct raft *r, uint64_t request_id)
{
    cs_assert(!r->in_ready);
    if (r->role == RAFT_LEADER)
        return read_start(r, request_id, r->id);
    if (r->role != RAFT_FOLLOWER || r->lead == 0)
        return RAFT_ENOTLEADER;
    struct raft_msg *m = outbox_msg_new(r, RAFT_MSG_READ_INDEX, r->lead);
    if (!m)
        return CS_EFULL;
    m->context = request_id;
    return 0;
}
