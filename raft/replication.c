/* Log replication: AppendEntries and heartbeats on the leader and their receivers, InstallSnapshot,
 * and commitment (§5.3, §5.4.2, §7, thesis §3.5, §3.10).
 *
 * Leader side: replication_send_append sends a follower what it misses from nextIndex on (at
 * most RAFT_MSG_ENTRIES_MAX entries and cfg.msg_bytes_max bytes per message), or the snapshot
 * when those entries are compacted (§7, in chunks, see below); progress.c decides
 * when a member is paused. Each message owns a copy of its entries, so a later truncation
 * cannot change what was sent. An answer moves match/next, frees the in-flight window and may
 * advance commit: the highest index stored on a quorum of voters, and only when that entry is
 * of the current term (§5.4.2). A member caught up with a transfer in progress gets TimeoutNow
 * (thesis §3.10).
 *
 * Follower side: the AppendEntries receiver (§5.3: consistency check, then log.c's append),
 * which rejects with a hint for fast backtracking; heartbeats (commit, ReadIndex context); the
 * InstallSnapshot receiver (§7). A heartbeat never tells a follower to commit beyond what it is
 * known to hold.
 *
 * Snapshot transfers (§7 with its offset/done fields, thesis §5.3; raft.h "Snapshots"): the
 * leader sends chunk numbers snap_next.. while fewer than cfg.snapshot_inflight_max are
 * unacknowledged past snap_acked, reading each chunk's bytes through cfg.snapshot_read into a
 * block its message owns. The follower's cumulative acknowledgement (bytes held in order) moves
 * snap_acked; a repeated one, or cfg.snapshot_resend_ticks without progress, rewinds snap_next
 * to snap_acked (go-back-N); an election timeout without progress, a refusal or an unreadable
 * image abandons the transfer (PROBE, and a new transfer with a new id follows). The follower
 * keeps one transfer (r->rx): it takes a chunk only at the offset it expects, holds the bytes
 * until the next ready hands them to the storage, and on the last chunk replaces its log by the
 * snapshot (log_restore), so that the last bytes and the install are saved as one unit. A new
 * term or role ends the transfer (election.c) before anything is installed. */
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

static uint32_t chunk_bytes(const struct raft *r)
{
    return r->cfg.snapshot_chunk_bytes ? r->cfg.snapshot_chunk_bytes : RAFT_CHUNK_BYTES_DEFAULT;
}

/* Chunks of a snapshot of `bytes` bytes: at least one (an empty image is one empty chunk). */
static uint64_t chunks_of(const struct raft *r, uint64_t bytes)
{
    uint64_t cb = chunk_bytes(r);
    return bytes ? (bytes + cb - 1) / cb : 1;
}

/* Queue chunk k of pr's transfer; its bytes come from the application (cfg.snapshot_read) into
 * a block the message owns. False if it could not (out of memory: like a lost message; the
 * image is gone: the transfer is abandoned). */
static bool send_chunk(struct raft *r, struct raft_progress *pr, uint64_t k)
{
    uint64_t cb = chunk_bytes(r), off = k * cb, total = pr->snap.bytes;
    cs_assert(k < chunks_of(r, total));
    uint32_t len = (uint32_t)(total - off < cb ? total - off : cb);
    struct raft_msg *m = outbox_msg_new(r, RAFT_MSG_SNAP, pr->id);
    if (!m)
        return false;
    m->has_snapshot = true;
    m->snapshot = pr->snap;
    m->chunk.transfer = pr->snap_transfer;
    m->chunk.offset = off;
    m->chunk.len = len;
    m->chunk.last = off + len == total;
    if (!len)
        return true;
    uint8_t *d = malloc(len);
    int rc = d && r->cfg.snapshot_read
                 ? r->cfg.snapshot_read(r->cfg.snapshot_ctx, pr->snap.index, off, d, len)
                 : -ENOMEM;
    if (rc != 0) {
        free(d);
        r->outbox_n--;
        if (d || !r->cfg.snapshot_read)
            replication_abort_snapshot(r, pr); /* the image is gone: start over */
        return false;
    }
    m->chunk.data = d;
    r->outbox_mem[m - r->outbox] = d;
    return true;
}

/* Fill pr's window: chunks from snap_next while fewer than cfg.snapshot_inflight_max are
 * unacknowledged (thesis §5.3, flow control like the appends' of thesis §3.5). */
static void send_chunks(struct raft *r, struct raft_progress *pr)
{
    unsigned window =
        r->cfg.snapshot_inflight_max ? r->cfg.snapshot_inflight_max : RAFT_CHUNK_INFLIGHT_DEFAULT;
    uint64_t n = chunks_of(r, pr->snap.bytes);
    for (unsigned k = 0; k < window && pr->state == PR_SNAPSHOT; k++) {
        if (pr->snap_next >= n || pr->snap_next - pr->snap_acked >= window)
            return;
        if (!send_chunk(r, pr, pr->snap_next))
            return;
        pr->snap_next++;
    }
}

/* §7: start a new transfer of our snapshot to pr (a new id: chunks of older transfers are told
 * apart). */
static void send_snapshot(struct raft *r, struct raft_progress *pr)
{
    pr->state = PR_SNAPSHOT;
    pr->pending_snapshot = r->snap.index;
    pr->snapshot_ticks = 0;
    pr->snap = r->snap;
    pr->snap_transfer = ++r->transfers;
    pr->snap_next = 0;
    pr->snap_acked = 0;
    pr->snap_rewound = 0;
    pr->infl_n = 0;
    pr->infl_start = 0;
    pr->infl_bytes = 0;
    send_chunks(r, pr);
}

void replication_abort_snapshot(struct raft *r, struct raft_progress *pr)
{
    (void)r;
    cs_assert(pr->state == PR_SNAPSHOT);
    pr->state = PR_PROBE;
    pr->next = pr->match + 1;
    pr->probe_sent = false;
    pr->pending_snapshot = 0;
    pr->snap_transfer = 0;
}

void replication_tick_snapshot(struct raft *r, struct raft_progress *pr)
{
    cs_assert(pr->state == PR_SNAPSHOT);
    unsigned resend =
        r->cfg.snapshot_resend_ticks ? r->cfg.snapshot_resend_ticks : 2 * r->cfg.heartbeat_ticks;
    if (resend >= r->cfg.election_ticks)
        resend = r->cfg.election_ticks - 1;
    pr->snapshot_ticks++;
    if (pr->snapshot_ticks >= r->cfg.election_ticks) {
        replication_abort_snapshot(r, pr); /* no progress for an election timeout */
        return;
    }
    if (pr->snapshot_ticks % resend == 0) {
        pr->snap_next = pr->snap_acked; /* go back to the first unacknowledged chunk */
        send_chunks(r, pr);
    }
}

void replication_handle_snapshot_resp(struct raft *r, struct raft_progress *pr,
                                      const struct raft_msg *m)
{
    pr->recent_active = true;
    if (pr->state != PR_SNAPSHOT || m->context != pr->snap_transfer || m->index != pr->snap.index)
        return; /* an answer about an older transfer */
    if (m->reject) {
        /* the follower lost the transfer (a restart, a new term): start a new one now */
        replication_abort_snapshot(r, pr);
        (void)replication_send_append(r, pr, true);
        return;
    }
    if (m->hint > pr->snap.bytes)
        return; /* no correct follower holds more than the image */
    uint64_t n = chunks_of(r, pr->snap.bytes);
    uint64_t held = m->hint == pr->snap.bytes ? n : m->hint / chunk_bytes(r);
    if (held < pr->snap_acked)
        return; /* reordered: an older acknowledgement */
    if (held == pr->snap_acked) {
        /* A duplicate: the follower got a chunk past a gap (chunks were lost or reordered) or
         * one again. Go back to the first unacknowledged chunk at once, once per acknowledged
         * level (fast retransmit, as TCP does), instead of waiting for the resend timeout. */
        if (pr->snap_next > held && pr->snap_rewound != held + 1) {
            pr->snap_rewound = held + 1;
            pr->snap_next = held;
            send_chunks(r, pr);
        }
        return;
    }
    pr->snap_acked = held;
    if (pr->snap_next < held)
        pr->snap_next = held;
    pr->snapshot_ticks = 0;
    send_chunks(r, pr);
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
            return pr->snap_next > 0;
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

/* §5.3, §5.4.2: the highest index stored on a quorum of voters (of both halves while joint,
 * thesis §4.3), committed only if it is of the current term. */
bool replication_maybe_commit(struct raft *r)
{
    cs_assert(r->role == RAFT_LEADER);
    uint64_t idx = conf_commit_index(r);
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

void replication_rx_abort(struct raft *r)
{
    if (!r->rx.active)
        return;
    cs_assert(!r->in_ready);
    outbox_drop_chunk_acks(r, r->rx.transfer); /* their bytes will never be saved */
    free(r->rx.buf);
    memset(&r->rx, 0, sizeof(r->rx));
}

static void send_chunk_ack(struct raft *r, const struct raft_msg *m, bool reject)
{
    struct raft_msg *a = outbox_msg_new(r, RAFT_MSG_SNAP_RESP, m->from);
    if (!a)
        return;
    a->reject = reject;
    a->index = m->snapshot.index;
    a->context = m->chunk.transfer;
    a->hint = reject ? 0 : r->rx.next;
}

/* Is m a chunk of the transfer being received? Every chunk carries the snapshot's description,
 * which must not change within a transfer. */
static bool rx_matches(const struct raft *r, const struct raft_msg *m)
{
    const struct raft_rx *x = &r->rx;
    return x->active && x->from == m->from && x->term == m->term &&
           x->transfer == m->chunk.transfer && x->snap.index == m->snapshot.index &&
           x->snap.term == m->snapshot.term && x->snap.bytes == m->snapshot.bytes &&
           memcmp(&x->snap.conf, &m->snapshot.conf, sizeof(x->snap.conf)) == 0;
}

/* A chunk at offset 0 of a transfer we do not know: begin receiving it if the snapshot is
 * wanted (§7 step 1-2); otherwise answer as to an append so that the leader moves on. */
static bool rx_begin(struct raft *r, const struct raft_msg *m)
{
    if (!log_snapshot_wanted(r, &m->snapshot)) {
        outbox_send_simple(r, RAFT_MSG_APP_RESP, m->from, r->term, false, r->commit);
        return false;
    }
    replication_rx_abort(r); /* the older transfer's partial snapshot is never installed */
    r->rx.active = true;
    r->rx.from = m->from;
    r->rx.term = m->term;
    r->rx.transfer = m->chunk.transfer;
    r->rx.snap = m->snapshot;
    r->rx.buf_start = true;
    return true;
}

/* Keep the chunk's bytes for the next save batch (appended to those not yet handed out). */
static bool rx_take(struct raft *r, const struct raft_chunk *c)
{
    struct raft_rx *x = &r->rx;
    cs_assert(c->offset == x->next);
    if ((uint64_t)x->buf_len + c->len > RAFT_CHUNK_RX_BYTES_MAX)
        return false; /* a full batch: dropped like a lost chunk, the leader resends */
    if (c->len) {
        uint8_t *b = realloc(x->buf, (size_t)x->buf_len + c->len);
        if (!b)
            return false;
        x->buf = b;
        memcpy(x->buf + x->buf_len, c->data, c->len);
    }
    if (!x->buf_len)
        x->buf_offset = c->offset;
    x->buf_len += c->len;
    x->next += c->len;
    return true;
}

/* §7 InstallSnapshot receiver, one chunk at a time (raft.h "Snapshots"). Chunks are taken in
 * offset order only; a duplicate or one out of order is answered with the bytes held. The last
 * chunk installs the snapshot (in the same save batch as its bytes). */
void replication_handle_snapshot(struct raft *r, const struct raft_msg *m)
{
    const struct raft_chunk *c = &m->chunk;
    if (r->snap_install)
        return; /* a snapshot installed in this batch: dropped like a lost chunk */
    if (!rx_matches(r, m)) {
        if (c->offset != 0) {
            send_chunk_ack(r, m, true); /* not a transfer we know: the leader starts anew */
            return;
        }
        if (!rx_begin(r, m))
            return;
    }
    if (c->offset != r->rx.next || !rx_take(r, c)) {
        send_chunk_ack(r, m, false); /* duplicate, reordered or no room: say what we hold */
        return;
    }
    if (!c->last) {
        send_chunk_ack(r, m, false);
        return;
    }
    if (!log_snapshot_wanted(r, &r->rx.snap)) {
        replication_rx_abort(r); /* the log moved past it meanwhile */
        outbox_send_simple(r, RAFT_MSG_APP_RESP, m->from, r->term, false, r->commit);
        return;
    }
    log_restore(r, &r->rx.snap);
    r->rx.active = false; /* complete: its bytes go out with the install in the next batch */
    outbox_send_simple(r, RAFT_MSG_APP_RESP, m->from, r->term, false, raft_last_index(r));
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
