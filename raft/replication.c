/* Log replication: AppendEntries and heartbeats on the leader and their receivers, InstallSnapshot,
 * and commitment (§5.3, §5.4.2, §7, thesis §3.5, §3.10).
 *
 * Leader side: replication_send_append sends a follower what it misses from nextIndex on (at
 * most RAFT_MSG_ENTRIES_MAX entries and cfg.msg_bytes_max bytes per message), or the snapshot
 * when those entries are compacted (§7, the whole snapshot in one message); progress.c decides
 * when a member is paused. Each message owns a copy of its entries, so a later truncation
 * cannot change what was sent. An answer moves match/next, frees the in-flight window and may
 * advance commit: the highest index stored on a quorum of voters, and only when that entry is
 * of the current term (§5.4.2). A member caught up with a transfer in progress gets TimeoutNow
 * (thesis §3.10).
 *
 * Follower side: the AppendEntries receiver (§5.3: consistency check, then log.c's append),
 * which rejects with a hint for fast backtracking; heartbeats (commit, ReadIndex context); the
 * InstallSnapshot receiver (§7). A heartbeat never tells a follower to commit beyond what it is
 * known to hold. */
#include "raft_int.h"

#include <cstore.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

static void send_snapshot(struct raft *r, struct raft_progress *pr)
{
    struct raft_msg *m = outbox_msg_new(r, RAFT_MSG_SNAP, pr->id);
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
bool replication_send_append(struct raft *r, struct raft_progress *pr, bool send_empty)
{
    cs_assert(pr->id != r->id);
    if (progress_paused(r, pr))
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
        prev_term = log_last_term(r);
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
    struct raft_msg *m = outbox_msg_new(r, RAFT_MSG_APP, pr->id);
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
            progress_infl_add(r, pr, hi, bytes);
        }
    } else {
        pr->probe_sent = true;
    }
    return true;
}

void replication_bcast_append(struct raft *r)
{
    for (unsigned i = 0; i < RAFT_NODES_MAX; i++)
        if (r->prs[i].id && r->prs[i].id != r->id)
            (void)replication_send_append(r, &r->prs[i], true);
}

static void send_heartbeat(struct raft *r, struct raft_progress *pr, uint64_t context)
{
    struct raft_msg *m = outbox_msg_new(r, RAFT_MSG_HEARTBEAT, pr->id);
    if (!m)
        return;
    /* never tell a follower to commit beyond what it is known to hold */
    m->commit = pr->match < r->commit ? pr->match : r->commit;
    m->context = context;
}

void replication_bcast_heartbeat(struct raft *r, uint64_t context)
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

/* §5.3, §5.4.2: the highest index stored on a quorum of voters, committed only if it is of the
 * current term. */
bool replication_maybe_commit(struct raft *r)
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
    if (idx <= r->commit || log_term_or0(r, idx) != r->term)
        return false;
    for (uint64_t i = r->commit + 1; i <= idx; i++) {
        uint64_t len = raft_entry_at(r, i)->len; /* entries of earlier leaders were not counted */
        r->uncommitted_bytes -= len < r->uncommitted_bytes ? len : r->uncommitted_bytes;
    }
    r->commit = idx;
    read_commit_in_term(r); /* reads queued before the first commit of the term */
    return true;
}

/* §5.3 AppendEntries receiver. */
void replication_handle_append(struct raft *r, const struct raft_msg *m)
{
    if (m->index < r->commit) {
        outbox_send_simple(r, RAFT_MSG_APP_RESP, m->from, r->term, false, r->commit);
        return;
    }
    if (log_matches(r, m->index, m->log_term)) {
        uint64_t last_new = m->index;
        int rc = log_append_follower(r, m->entries, m->entries_n, &last_new);
        if (m->entries_n == 0 || last_new < m->index)
            last_new = m->index;
        (void)rc; /* log full: acknowledge what we took */
        log_commit_to(r, m->commit < last_new ? m->commit : last_new);
        outbox_send_simple(r, RAFT_MSG_APP_RESP, m->from, r->term, false, last_new);
        return;
    }
    /* reject with a hint (fast backtracking): the last index whose term is <= prevLogTerm */
    uint64_t ht, hint = log_find_conflict(r, m->index, m->log_term, &ht);
    struct raft_msg *resp = outbox_msg_new(r, RAFT_MSG_APP_RESP, m->from);
    if (!resp)
        return;
    resp->reject = true;
    resp->index = m->index;
    resp->hint = hint;
    resp->log_term = ht;
}

void replication_handle_heartbeat(struct raft *r, const struct raft_msg *m)
{
    if (m->commit > raft_last_index(r)) {
        /* The leader sends min(match, commit), so a commit past our last index means the sender
         * believes we hold entries we do not: a bug in it or a log lost under us. Bytes from the
         * network are an error, never an assertion: refuse the message (no answer, so the
         * leader learns nothing false) and count it (raft_msgs_refused). Never a silent cap. */
        r->msgs_refused++;
        return;
    }
    log_commit_to(r, m->commit);
    struct raft_msg *resp = outbox_msg_new(r, RAFT_MSG_HEARTBEAT_RESP, m->from);
    if (resp)
        resp->context = m->context;
}

void replication_handle_snapshot(struct raft *r, const struct raft_msg *m)
{
    if (log_restore(r, &m->snapshot))
        outbox_send_simple(r, RAFT_MSG_APP_RESP, m->from, r->term, false, raft_last_index(r));
    else
        outbox_send_simple(r, RAFT_MSG_APP_RESP, m->from, r->term, false, r->commit);
}

void replication_send_timeout_now(struct raft *r, uint64_t to)
{
    struct raft_msg *m = outbox_msg_new(r, RAFT_MSG_TIMEOUT_NOW, to);
    (void)m;
}

void replication_handle_append_resp(struct raft *r, struct raft_progress *pr,
                                    const struct raft_msg *m)
{
    pr->recent_active = true;
    if (m->reject) {
        uint64_t probe = m->hint;
        if (m->log_term > 0) {
            uint64_t t;
            probe = log_find_conflict(r, m->hint, m->log_term, &t);
        }
        if (progress_decrease_to(pr, m->index, probe)) {
            if (pr->state == PR_REPLICATE)
                progress_become_probe(r, pr);
            (void)replication_send_append(r, pr, true);
        }
        return;
    }
    bool was_paused = progress_paused(r, pr);
    /* a probe answered at match: the logs agree up to there, so replicate (etcd does the same) */
    bool probe_at_match = m->index == pr->match && pr->state == PR_PROBE;
    if (m->index <= pr->match && pr->state != PR_SNAPSHOT && !probe_at_match)
        return; /* stale */
    if (m->index > pr->match)
        pr->match = m->index;
    if (pr->next < m->index + 1)
        pr->next = m->index + 1;
    pr->probe_sent = false;
    if (pr->state == PR_PROBE) {
        progress_become_replicate(pr);
    } else if (pr->state == PR_SNAPSHOT) {
        if (pr->match < pr->pending_snapshot)
            return;
        progress_become_probe(r, pr);
        progress_become_replicate(pr);
    } else {
        progress_infl_free_to(pr, m->index);
    }
    if (replication_maybe_commit(r))
        replication_bcast_append(r);
    else if (was_paused)
        (void)replication_send_append(r, pr, true);
    /* pipelining: fill the window (bounded by inflight_msgs_max) */
    for (unsigned k = 0; k < r->cfg.inflight_msgs_max; k++)
        if (!replication_send_append(r, pr, false))
            break;
    if (pr->id == r->transferee && pr->match == raft_last_index(r))
        replication_send_timeout_now(r, pr->id);
}
