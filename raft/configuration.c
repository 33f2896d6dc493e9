/* Membership: the configuration in force and its validity rules (thesis §4.1, §4.2.1).
 *
 * A server uses the newest configuration in its log, committed or not (thesis §4.1): a CONF
 * entry takes effect when it is appended (conf_apply_entry), and a truncation that removes it
 * puts the previous one back (conf_recompute); without a CONF entry in memory the snapshot's
 * configuration is in force (cfg.bootstrap stands for the one at index 0). Changes are single-
 * server ones (raft_propose_conf in raft.c); new members join as non-voting learners (thesis
 * §4.2.1). Putting a configuration in force rebuilds the member slots (progress.c), cancels a
 * transfer to a node that is no longer a voter and restarts the ReadIndex acknowledgement count.
 *
 * Validity rules (raft_conf_valid): 1..RAFT_NODES_MAX voters, voters + learners <=
 * RAFT_NODES_MAX, ids non-zero and distinct, no node both voter and learner. The byte encoding
 * of a configuration is in raft_msg.c. */
#include "raft_int.h"

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

unsigned conf_quorum(const struct raft_conf *c)
{
    return c->voters_n / 2u + 1u;
}

/* The configuration in force: the newest CONF entry in the log, else the snapshot's (thesis
 * §4.1). O(log length), used after truncation and at start only. */
void conf_recompute(struct raft *r)
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

int conf_apply_entry(struct raft *r, const struct raft_entry *e)
{
    struct raft_conf c;
    int rc = raft_conf_decode(e->data, e->len, &c);
    if (rc)
        return rc;
    conf_set(r, &c, e->index);
    return 0;
}

void conf_set(struct raft *r, const struct raft_conf *c, uint64_t index)
{
    cs_assert(raft_conf_valid(c));
    r->conf = *c;
    r->conf_index = index;
    progress_rebuild(r, c);
    if (r->transferee && !raft_conf_is_voter(c, r->transferee)) {
        r->transferee = 0;
        r->transfer_elapsed = 0;
    }
    /* ReadIndex acks are per slot: start the count again (thesis §6.4 stays safe: later
     * heartbeat rounds confirm every pending read) */
    struct raft_progress *self = progress_find(r, r->id);
    for (unsigned k = 0; k < r->reads_n; k++) {
        struct raft_read_pending *p = &r->reads[(r->reads_start + k) % RAFT_READS_MAX];
        p->acks = self ? 1u << progress_slot(r, self) : 0;
    }
}

/* The configuration as of index (<= last): the newest CONF entry at or before it. */
struct raft_conf conf_at(const struct raft *r, uint64_t index)
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
