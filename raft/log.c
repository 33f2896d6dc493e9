/* The log (§5.3) and its snapshot (§7), kept in memory after the last snapshot.
 *
 * Entries (snap.index, last] live in r->ents, each with an owned copy of its data; the
 * snapshot (index, term, configuration, size) stands for everything up to snap.index. Indexes
 * map to slots as ents[index - snap.index - 1]. Invariants (checked by raft.c after every
 * input): snap.index <= applied <= commit <= last and snap.index <= stable <= last; a committed
 * entry is never truncated (§5.4).
 *
 * Here: the accessors of the public interface (raft_entry_at, raft_term_at...), the §5.4.1
 * up-to-date rule, fast backtracking (thesis §5.3 end: find the largest index whose term is at
 * most the one given), the AppendEntries receiver's steps 3-4 (log_append_follower), the
 * InstallSnapshot receiver (§7, log_snapshot_wanted and log_restore), compaction (§7, raft_compact)
 * and loading a restarted node from storage (§5.1, log_load). Loops are bounded by the log length
 * (<= RAFT_LOG_ENTRIES_MAX) or the entries of one message (<= RAFT_MSG_ENTRIES_MAX). */
#include "raft_int.h"

#include <cstore.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
uint64_t log_term_or0(const struct raft *r, uint64_t index)
{
    uint64_t t;
    (void)raft_term_at(r, index, &t);
    return t;
}

uint64_t log_last_term(const struct raft *r)
{
    return log_term_or0(r, raft_last_index(r));
}

bool log_matches(const struct raft *r, uint64_t index, uint64_t term)
{
    uint64_t t;
    return raft_term_at(r, index, &t) && t == term;
}

/* §5.4.1: is a log ending at (index, term) at least as up-to-date as ours? */
bool log_up_to_date(const struct raft *r, uint64_t index, uint64_t term)
{
    uint64_t lt = log_last_term(r);
    return term > lt || (term == lt && index >= raft_last_index(r));
}

/* Fast backtracking (thesis §5.3 end, etcd findConflictByTerm): the largest index <= index whose
 * term is <= term, or the snapshot index if the walk reaches it. Bounded by the log length. */
uint64_t log_find_conflict(const struct raft *r, uint64_t index, uint64_t term,
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

void log_entry_free(struct raft_entry *e)
{
    free((void *)e->data);
    e->data = NULL;
}

static int log_reserve(struct raft *r, size_t n)
{
    size_t max = r->cfg.log_entries_max ? r->cfg.log_entries_max : RAFT_LOG_ENTRIES_MAX;
    if (r->ents_n + n > max)
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
int log_push(struct raft *r, const struct raft_entry *e)
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

/* Drop entries from index on (a conflicting suffix, §5.3). Never a committed one. */
static void log_truncate(struct raft *r, uint64_t index)
{
    cs_assert(index > r->commit);
    cs_assert(index > r->snap.index);
    uint64_t last = raft_last_index(r);
    for (uint64_t i = index; i <= last; i++)
        log_entry_free(&r->ents[i - r->snap.index - 1]);
    r->ents_n = index - r->snap.index - 1;
    if (r->stable >= index)
        r->stable = index - 1;
    outbox_drop_acks_from(r, index); /* acks of this batch for the entries just dropped */
    if (r->conf_index >= index)
        conf_recompute(r);
}

/* §5.3 AppendEntries receiver steps 3-4: skip the entries we already have, truncate at the
 * first conflict, append the rest. Returns 0, or a negative code if the log is full (the
 * entries from the failure on are not appended; the reply then acknowledges less). */
int log_append_follower(struct raft *r, const struct raft_entry *es, uint32_t n, uint64_t *last_new)
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

/* Raise the commit index to index. Callers pass what they checked against the log (the last
 * new entry of an append, a heartbeat's commit checked by its handler, a snapshot we hold), so
 * an index past the last one is a bug here, not bad input. */
void log_commit_to(struct raft *r, uint64_t index)
{
    cs_assert(index <= raft_last_index(r));
    if (index > r->commit)
        r->commit = index;
}

bool log_committed_in_term(const struct raft *r)
{
    return log_term_or0(r, r->commit) == r->term;
}

/* §7 InstallSnapshot receiver, before taking a transfer and again at its last chunk: whether
 * snapshot s would replace the log. A snapshot whose configuration does not name this node is
 * refused and counted (etcd does the same): installing it would leave a node outside its own
 * configuration, which no correct leader sends. One the log holds (index and term) only moves
 * the commit index (§7 step 6). */
bool log_snapshot_wanted(struct raft *r, const struct raft_snapshot *s)
{
    if (s->index <= r->commit)
        return false;
    if (!raft_conf_is_voter(&s->conf, r->id) && !raft_conf_is_learner(&s->conf, r->id)) {
        r->msgs_refused++;
        return false;
    }
    if (log_matches(r, s->index, s->term)) {
        log_commit_to(r, s->index); /* we hold it all: just fast-forward (§7 step 6) */
        return false;
    }
    return true;
}

/* §7 steps 5-7: discard the log, the snapshot stands for it; the next ready installs it (its
 * last chunk and the install go out in one save batch). */
void log_restore(struct raft *r, const struct raft_snapshot *s)
{
    cs_assert(s->index > r->commit);
    for (size_t i = 0; i < r->ents_n; i++)
        log_entry_free(&r->ents[i]);
    r->ents_n = 0;
    r->snap = *s;
    r->snap_install = true;
    r->stable = s->index;
    r->commit = s->index;
    r->applied = s->index;
    conf_set(r, &s->conf, s->index);
}

int raft_compact(struct raft *r, uint64_t index, uint64_t bytes)
{
    cs_assert(!r->in_ready);
    if (index <= r->snap.index || index > r->applied || index > r->stable)
        return CS_EINVAL;
    if (bytes > RAFT_SNAPSHOT_BYTES_MAX)
        return CS_EINVAL;
    struct raft_snapshot s = {.index = index, .term = log_term_or0(r, index), .bytes = bytes};
    s.conf = conf_at(r, index);
    size_t drop = (size_t)(index - r->snap.index);
    for (size_t i = 0; i < drop; i++)
        log_entry_free(&r->ents[i]);
    memmove(r->ents, r->ents + drop, (r->ents_n - drop) * sizeof(*r->ents));
    r->ents_n -= drop;
    r->snap = s;
    return 0;
}

/* Load a restarted node's state (§5.1: hard state, snapshot, log). */
int log_load(struct raft *r, const struct raft_storage *st)
{
    struct raft_hard_state hs;
    struct raft_snapshot s;
    uint64_t last;
    memset(&s, 0, sizeof(s));
    int rc = st->load(st->ctx, &hs, &s, &last);
    if (rc)
        return rc;
    if (last < s.index || last - s.index > RAFT_LOG_ENTRIES_MAX ||
        s.bytes > RAFT_SNAPSHOT_BYTES_MAX)
        return CS_ECORRUPT;
    if (s.index) {
        if (!raft_conf_valid(&s.conf))
            return CS_ECORRUPT;
        r->snap = s;
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
