/* Completion of requests on a shard.
 *
 * A request completes through its done() callback on the shard thread (or, once the loop is
 * gone, on the submitter's: see shard_submit). In sync mode every request completes only once
 * every LSN applied before it executed is durable (a read: every LSN that changed what it can
 * see, req_finish_read): requests that must wait join one FIFO list in LSN order
 * (pending_head/tail), completed when a frame becomes durable (pending_complete) or failed
 * together when one cannot (pending_fail).
 *
 * Latency: puts, gets, deletes and batches (SHARD_TIMED) carry the time shard_submit queued them;
 * when they complete here (at once, or from the pending list) their latency goes into the shard's
 * histogram of their op. Requests that fail with the pending list (pending_fail), or that are
 * refused because the loop is gone, are not recorded. */
#include "shards/shard_int.h"

/* ---- completion ---- */

/* A timed request completes at now_ns: record its latency since shard_submit. */
static void req_record(struct shard *sh, const struct shard_req *r, uint64_t now_ns)
{
    uint64_t ns = now_ns > r->submit_ns ? now_ns - r->submit_ns : 0;
    hist_record_sw(&sh->hists[r->op], ns);
}

void req_complete(struct shard_req *r, int rc)
{
    r->rc = rc;
    r->done(r);
}

/* Complete now, or once every LSN up to lsn is durable (sync mode). */
static void finish_at(struct shard *sh, struct shard_req *r, int rc, uint64_t lsn)
{
    if (sh->cfg.durability != SHARD_SYNC || lsn <= sh->durable_lsn) {
        if (SHARD_TIMED(r->op))
            req_record(sh, r, cs_now_ns());
        req_complete(r, rc);
        return;
    }
    r->rc = rc;
    r->wait_lsn = lsn;
    r->next = NULL;
    if (sh->pending_tail)
        sh->pending_tail->next = r;
    else
        sh->pending_head = r;
    sh->pending_tail = r;
    sh->pending_count++;
}

/* Complete now, or once everything applied so far is durable (sync mode). */
void req_finish(struct shard *sh, struct shard_req *r, int rc)
{
    SHARD_OWNED(sh);
    finish_at(sh, r, rc, sh->applied_lsn);
}

/* A read: complete once what the trees show is durable. Records that change nothing a read can
 * see are not waited for: a PREPARE (its intents are shown only once the transaction is
 * committed, which needs the PREPARE durable) and an outcome record (a commit installs writes
 * that its durable PREPARE holds). So a read does not wait for another transaction's fsync. The
 * list stays in LSN order but for such reads, which may then wait behind an earlier entry: later,
 * never sooner. A read-write transaction's read (r->read_now) waits for nothing: its commit
 * completes only once its log is durable past what the read saw (engine/txn.c). */
void req_finish_read(struct shard *sh, struct shard_req *r, int rc)
{
    SHARD_OWNED(sh);
    cs_assert(sh->data_lsn <= sh->applied_lsn);
    finish_at(sh, r, rc, r->read_now ? 0 : sh->data_lsn);
}

void pending_complete(struct shard *sh)
{
    SHARD_OWNED(sh);
    struct shard_req *r = sh->pending_head;
    uint64_t now_ns = 0; /* one clock read for the whole list: they complete together */
    while (r && r->wait_lsn <= sh->durable_lsn) {
        struct shard_req *next = r->next;
        if (SHARD_TIMED(r->op)) {
            if (!now_ns)
                now_ns = cs_now_ns();
            req_record(sh, r, now_ns);
        }
        cs_assert(sh->pending_count > 0);
        sh->pending_count--;
        r->done(r);
        r = next;
    }
    sh->pending_head = r;
    if (!r)
        sh->pending_tail = NULL;
}

/* Everything waiting on durability fails with err; with read_only, the shard also stops taking
 * writes until it is reopened (a failed write or fdatasync is never retried). */
void pending_fail(struct shard *sh, int err, bool read_only)
{
    SHARD_OWNED(sh);
    if (read_only && !sh->io_error) {
        fprintf(stderr,
                "cstore: shard %u: a WAL write or fdatasync failed (%s); the shard is "
                "read-only until the database is reopened\n",
                sh->cfg.index, cs_strerror(sh->io_res ? sh->io_res : err));
        sh->io_error = err;
        sh->stats.io_error = err;
    }
    struct shard_req *r = sh->pending_head;
    while (r) {
        struct shard_req *next = r->next;
        if (r->op == SHARD_VIEW_PIN_ALL && r->out)
            views_release_all(sh, r); /* they may hold what was just taken back */
        if (r->out) {
            cs_mem_free(r->out);
            r->out = NULL;
        }
        if (r->op == SHARD_VIEW_PIN && r->view) {
            view_release(sh, r->view); /* it may hold what was just taken back */
            r->view = NULL;
        }
        req_complete(r, err);
        r = next;
    }
    sh->pending_head = sh->pending_tail = NULL;
    sh->pending_count = 0;
}
