/* Membership: the configuration in force, its validity rules, and the quorums decisions need
 * (thesis §4.1, §4.2.1, §4.2.2, §4.3).
 *
 * A server uses the newest configuration in its log, committed or not (thesis §4.1): a CONF
 * entry takes effect when it is appended (conf_apply_entry), and a truncation that removes it
 * puts the previous one back (conf_recompute); without a CONF entry in memory the snapshot's
 * configuration is in force (cfg.bootstrap stands for the one at index 0). Putting a
 * configuration in force rebuilds the member slots (progress.c), cancels a transfer to a node
 * that is no longer a voter and restarts the ReadIndex acknowledgement count.
 *
 * Joint consensus (thesis §4.3): a configuration C_old,new lists C_new's voters (voters) and
 * C_old's (old). Every decision, an election (election.c), a commit (replication.c), a ReadIndex
 * round (read.c) and CheckQuorum (raft.c), needs a majority of each half: conf_poll and
 * conf_commit_index walk the halves (one when not joint). A voter counts only in the halves that
 * list it, so a leader outside C_new does not count itself in C_new's majority (thesis §4.2.2).
 * conf_enter builds C_old,new from the configuration in force and a target; conf_leave builds
 * C_new from C_old,new (a voter of C_old that turns learner waits in learners_next, etcd's
 * LearnersNext, so that it never is voter and learner at once).
 *
 * Validity rules (raft_conf_valid): see struct raft_conf in raft.h. The byte encoding of a
 * configuration is in raft_msg.c. Loops walk the lists of one configuration (<= RAFT_NODES_MAX
 * each) or, for a lookup per listed id, the member slots (<= RAFT_NODES_MAX). */
#include "raft_int.h"

#include <string.h>

static bool ids_contain(const uint64_t *ids, unsigned n, uint64_t id)
{
    for (unsigned i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

bool raft_conf_is_voter(const struct raft_conf *c, uint64_t id)
{
    return ids_contain(c->voters, c->voters_n, id) || ids_contain(c->old, c->old_n, id);
}

bool raft_conf_is_learner(const struct raft_conf *c, uint64_t id)
{
    return ids_contain(c->learners, c->learners_n, id);
}

bool raft_conf_is_joint(const struct raft_conf *c)
{
    return c->old_n > 0;
}

/* Ids non-zero and distinct within the list. */
static bool ids_valid(const uint64_t *ids, unsigned n)
{
    if (n > RAFT_NODES_MAX)
        return false;
    for (unsigned i = 0; i < n; i++)
        if (ids[i] == 0 || ids_contain(ids, i, ids[i]))
            return false;
    return true;
}

bool raft_conf_valid(const struct raft_conf *c)
{
    if (c->voters_n < 1 || !ids_valid(c->voters, c->voters_n))
        return false;
    if (!ids_valid(c->learners, c->learners_n) || !ids_valid(c->old, c->old_n) ||
        !ids_valid(c->learners_next, c->learners_next_n))
        return false;
    if (c->learners_next_n && !c->old_n)
        return false; /* learners_next only while joint */
    unsigned members = c->voters_n + c->learners_n;
    for (unsigned i = 0; i < c->learners_n; i++)
        if (raft_conf_is_voter(c, c->learners[i]))
            return false;
    for (unsigned i = 0; i < c->old_n; i++)
        members += !ids_contain(c->voters, c->voters_n, c->old[i]);
    for (unsigned i = 0; i < c->learners_next_n; i++) {
        uint64_t id = c->learners_next[i];
        if (!ids_contain(c->old, c->old_n, id) || ids_contain(c->voters, c->voters_n, id))
            return false;
    }
    return members <= RAFT_NODES_MAX;
}

/* The halves a decision needs a majority of: C_new and, while joint, C_old (thesis §4.3). */
static unsigned conf_halves(const struct raft_conf *c)
{
    return c->old_n ? 2u : 1u;
}

/* The voter ids of half h (0: C_new or the only one, 1: C_old) into *ids; returns their count. */
static unsigned conf_half(const struct raft_conf *c, unsigned h, const uint64_t **ids)
{
    *ids = h ? c->old : c->voters;
    return h ? c->old_n : c->voters_n;
}

/* Bit of the member slot of id (0 when id has no slot). */
static uint32_t slot_bit(struct raft *r, uint64_t id)
{
    struct raft_progress *pr = progress_find(r, id);
    return pr ? 1u << progress_slot(r, pr) : 0;
}

uint32_t conf_self_bit(struct raft *r)
{
    return slot_bit(r, r->id);
}

/* thesis §4.3: won when the granted slots hold a majority of every half, lost when the rejected
 * ones leave some half without a possible majority. */
enum poll_result conf_poll(struct raft *r, uint32_t granted, uint32_t rejected)
{
    bool won = true;
    for (unsigned h = 0; h < conf_halves(&r->conf); h++) {
        const uint64_t *ids;
        unsigned n = conf_half(&r->conf, h, &ids), yes = 0, no = 0, q = n / 2u + 1u;
        for (unsigned i = 0; i < n; i++) {
            uint32_t b = slot_bit(r, ids[i]);
            yes += (granted & b) != 0;
            no += (rejected & b) != 0;
        }
        if (no > n - q)
            return POLL_LOST;
        won = won && yes >= q;
    }
    return won ? POLL_WON : POLL_PENDING;
}

bool conf_quorum_slots(struct raft *r, uint32_t slots)
{
    return conf_poll(r, slots, 0) == POLL_WON;
}

/* §5.3 / thesis §4.3: the highest index stored on a majority of half h (matchIndex of its
 * voters; a leader counts itself only in the halves that list it, thesis §4.2.2). */
static uint64_t half_commit(struct raft *r, unsigned h)
{
    const uint64_t *ids;
    unsigned n = conf_half(&r->conf, h, &ids);
    uint64_t m[RAFT_NODES_MAX + 1];
    unsigned listed = 0;
    for (unsigned i = 0; i < n; i++) {
        const struct raft_progress *pr = progress_find(r, ids[i]);
        cs_assert(pr != NULL); /* every voter has a slot */
        m[listed++] = pr->match;
    }
    cs_assert(listed >= 1); /* a configuration has a voter in each half */
    /* insertion sort, descending; n <= RAFT_NODES_MAX */
    for (unsigned i = 1; i < listed; i++) {
        uint64_t v = m[i];
        unsigned j = i;
        for (; j > 0 && m[j - 1] < v; j--)
            m[j] = m[j - 1];
        m[j] = v;
    }
    return m[n / 2u]; /* the (n / 2 + 1)-th highest: a majority holds it */
}

uint64_t conf_commit_index(struct raft *r)
{
    uint64_t idx = UINT64_MAX;
    for (unsigned h = 0; h < conf_halves(&r->conf); h++) {
        uint64_t v = half_commit(r, h);
        idx = v < idx ? v : idx;
    }
    cs_assert(idx != UINT64_MAX);
    return idx;
}

static void ids_remove(uint64_t *ids, uint8_t *n, uint64_t id)
{
    unsigned k = 0;
    for (unsigned i = 0; i < *n; i++)
        if (ids[i] != id)
            ids[k++] = ids[i];
    *n = (uint8_t)k;
}

/* thesis §4.3: C_old,new from the configuration in force `cur` (not joint) and `target`. C_old
 * lists the voters of cur, those still voting in target first (in target's order), as
 * raft_conf_decode lists them; a voter of cur that is a learner in target waits in
 * learners_next. False if the result breaks a validity rule (too many members). */
bool conf_enter(const struct raft_conf *cur, const struct raft_conf *target, struct raft_conf *out)
{
    cs_assert(!raft_conf_is_joint(cur));
    cs_assert(!raft_conf_is_joint(target));
    *out = *target;
    for (unsigned i = 0; i < target->voters_n; i++)
        if (ids_contain(cur->voters, cur->voters_n, target->voters[i]))
            out->old[out->old_n++] = target->voters[i];
    for (unsigned i = 0; i < cur->voters_n; i++) {
        uint64_t id = cur->voters[i];
        if (ids_contain(target->voters, target->voters_n, id))
            continue;
        out->old[out->old_n++] = id;
        if (raft_conf_is_learner(target, id)) {
            ids_remove(out->learners, &out->learners_n, id);
            out->learners_next[out->learners_next_n++] = id;
        }
    }
    return raft_conf_valid(out);
}

/* thesis §4.3: C_new, the configuration that leaves the joint one c (learners_next become
 * learners). */
void conf_leave(const struct raft_conf *c, struct raft_conf *out)
{
    cs_assert(raft_conf_is_joint(c));
    memset(out, 0, sizeof(*out));
    out->voters_n = c->voters_n;
    memcpy(out->voters, c->voters, sizeof(out->voters));
    out->learners_n = c->learners_n;
    memcpy(out->learners, c->learners, sizeof(out->learners));
    for (unsigned i = 0; i < c->learners_next_n; i++)
        out->learners[out->learners_n++] = c->learners_next[i];
    cs_assert(raft_conf_valid(out));
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
    uint32_t self = conf_self_bit(r);
    for (unsigned k = 0; k < r->reads_n; k++) {
        struct raft_read_pending *p = &r->reads[(r->reads_start + k) % RAFT_READS_MAX];
        p->acks = self;
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
