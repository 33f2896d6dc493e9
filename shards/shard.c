/* The shard runtime.
 *
 * A shard is one thread pinned to one CPU. It owns, and alone touches: one copy-on-write B+ tree
 * per collection present on the shard, the shard's WAL, its io_uring, and its jemalloc arena.
 * Application threads reach it only through its inbox: a Concurrency Kit lock-free stack
 * (ck_stack_push_upmc: one CAS, no producer ever waits for another) that the shard empties whole
 * with one atomic exchange (ck_stack_batch_pop_upmc) and reverses into arrival order. A ring was
 * tried first: with more application threads than cores, a producer preempted between reserving
 * and publishing its slot made every later producer spin until it ran again. The inbox needs no
 * capacity of its own: requests are owned by their submitters, so the queue is bounded by what
 * is in flight (one per blocking caller, `depth` per session). The submitter owns each request's
 * memory and is told of completion through the request's done() callback, run on the shard
 * thread.
 *
 * THE LOOP
 *   1. take up to batch_max requests from the inbox and execute them against the trees; writes
 *      append their WAL records to the open frame (stop early once the frame holds
 *      WAL_FRAME_SOFT_BYTES);
 *   2. if no frame is being written and the open frame is not empty, seal it and submit one
 *      write, with RWF_DSYNC in sync mode (a plain write in async mode): group commit —
 *      requests that arrive while a write is in flight form the next frame;
 *   3. submit and reap io_uring completions: a finished frame makes its LSNs durable and completes
 *      every pending request whose LSN is now durable; an eventfd read wakes an idle loop;
 *   4. a guest attached to the loop (the server, see struct shard_guest) does its work; while
 *      records with an expiry may exist, a timer makes a bounded reclaim pass due every
 *      EXPIRE_PERIOD_MS (expire.c), run after step 1;
 *   5. with nothing to do, block in io_uring until a completion arrives: an idle shard uses no
 *      CPU (in sync mode it first yields for up to yield_us after a write's submission; see
 *      wait_count). The loop exchanges a sleeping flag to 1 and then looks at the inbox; a
 *      submitter pushes, then exchanges the flag to 0 and wakes the loop (eventfd) if it was
 *      1. Both exchange the same word, so a wake-up is never lost.
 *
 * DURABILITY RULES
 *   sync  — a write completes after the frame holding its record is written and fdatasync'ed.
 *           Every other request completes only once every LSN applied before it executed is
 *           durable; a read (and "not found" answers) once every record that changed what it
 *           can see is (data_lsn: PREPAREs and outcome records do not count, see
 *           req_finish_read): a read never returns a value a crash could still lose. Pending
 *           requests form one FIFO list in LSN order.
 *   async — requests complete when executed; frames are written as in sync mode and fdatasync'ed
 *           every sync_interval_ms.
 *   none  — no WAL: the trees are the only copy.
 *   A failed write or fdatasync is never retried: the shard turns read-only (io_error), every
 *   pending and later write fails with CS_EIO; reads keep working.
 *
 * VIEWS (lock-free reads): see views.c. COLLECTIONS: see catalog.c.
 *
 * FILES. This file is the loop, WAL I/O and thread start and stop; the other rooms of the shard
 * runtime are exec.c, completion.c, catalog.c, undo.c, views.c and shard_ckpt.c, sharing
 * shard_int.h (struct shard and their functions). Only shard.h is visible to the engine.
 */
#include "shards/shard_int.h"

/* ---- WAL I/O ---- */

/* The open frame holds only outcome records of cross-shard transactions (txn.c: log_outcome),
 * which nobody waits for: it is held back for up to OUTCOME_HOLD_NS, so that the records ride
 * in the next frame that carries anything else (the next PREPARE, above all, which would
 * otherwise find this frame's write in flight and wait for it: two fsyncs per transaction). It
 * goes at once when a request waits on durability, a checkpoint waits for its LSN, or the shard
 * stops. */
static bool frame_held(struct shard *sh)
{
    return wal_open_bytes(&sh->wal) == sh->outcome_bytes && !sh->hold_done && !sh->stopping &&
           !sh->pending_head && !sh->ckpt;
}

/* The open frame was sealed or dropped: it holds nothing any more. */
static void frame_reset(struct shard *sh)
{
    sh->outcome_bytes = 0;
    sh->hold_done = false;
}

/* A frame could not be made durable. With ENOSPC in sync mode nothing of it reached the file:
 * its changes (and the open frame's, which build on them) are taken back, what waited on them
 * fails with -ENOSPC, and the shard stays writable, so that it works again once space is freed.
 * Any other error is fail-stop: the same rollback (readers must never see what is not durable),
 * then read-only until reopen. In async mode writes were acknowledged already: fail-stop. */
static void frame_failed(struct shard *sh, int err, bool in_flight)
{
    /* a checkpoint being written may hold what is now taken back; its LSNs will be reused */
    if (sh->ckpt && sh->ckpt->lsn > sh->durable_lsn)
        sh->ckpt_doomed = true;
    if (sh->undo_on) {
        bool undone = undo_rollback(sh, &sh->undo[sh->wal.open]);
        if (in_flight) {
            undone = undo_rollback(sh, &sh->undo[sh->wal.open ^ 1u]) && undone;
            views_discard_cap(sh, &sh->cap[sh->wal.open ^ 1u]);
        }
        sh->frame_seq++;
        sh->applied_lsn = sh->durable_lsn;
        if (sh->data_lsn > sh->durable_lsn)
            sh->data_lsn = sh->durable_lsn;
        if (!undone) {
            fprintf(stderr,
                    "cstore: shard %u: out of memory while taking back a failed WAL frame; "
                    "its live trees are fenced (reads of them fail) until the database is "
                    "reopened\n",
                    sh->cfg.index);
            sh->fenced = true;
            if (err == -ENOSPC)
                err = CS_EIO; /* the shard cannot stay writable */
        }
    }
    if (err == -ENOSPC && sh->undo_on) {
        if (in_flight)
            wal_rewind(&sh->wal, &sh->io);
        else
            wal_discard_open(&sh->wal);
        frame_reset(sh);
        sh->stats.wal_enospc++;
        pending_fail(sh, -ENOSPC, false);
        if (sh->txn_settling)
            txn_after_rollback(sh, true);
        return;
    }
    pending_fail(sh, err == -ENOSPC ? -ENOSPC : CS_EIO, true);
    if (sh->txn_settling && sh->undo_on)
        txn_after_rollback(sh, false);
}

static void wal_submit(struct shard *sh)
{
    if (!sh->wal_on || sh->wal.in_flight || sh->io_error || wal_open_bytes(&sh->wal) == 0)
        return;
    if (frame_held(sh)) {
        if (!sh->hold_armed) {
            sh->hold_ts.tv_sec = 0;
            sh->hold_ts.tv_nsec = OUTCOME_HOLD_NS;
            sh->hold_armed = io_ring_timeout(&sh->ring, &sh->hold_ts, TAG_HOLD) == 0;
            sh->hold_frame = sh->frame_seq;
        }
        if (sh->hold_armed)
            return; /* else no timer: written now */
    }
    uint32_t delay_us = sh->cfg.group_commit_delay_us;
    if (delay_us && !sh->delay_done && !sh->stopping &&
        wal_open_bytes(&sh->wal) < WAL_FRAME_SOFT_BYTES) {
        if (!sh->delay_armed) {
            sh->delay_ts.tv_sec = delay_us / 1000000u;
            sh->delay_ts.tv_nsec = (long long)(delay_us % 1000000u) * 1000;
            sh->delay_armed = io_ring_timeout(&sh->ring, &sh->delay_ts, TAG_DELAY) == 0;
        }
        return;
    }
    sh->delay_done = false;
    frame_reset(sh);
    int rc = wal_seal(&sh->wal, sh->durable_lsn, &sh->io);
    if (rc) {
        frame_failed(sh, rc, false);
        return;
    }
    sh->frame_seq++;
    bool sync = sh->cfg.durability == SHARD_SYNC;
    if (sync)
        views_capture(sh, &sh->cap[sh->wal.open ^ 1u], views_needed(sh));
    rc = io_ring_write(&sh->ring, sh->io.fd, sh->io.buf, sh->io.len, sh->io.off, 0,
                       sh->io.frame_bytes, sync, TAG_WRITE);
    cs_assert(rc == 0); /* the ring has room: at most one frame is in flight */
    sh->io_wait = 1;    /* one write; with sync it carries RWF_DSYNC */
    sh->io_res = 0;
    sh->io_yield = sync && sh->cfg.yield_us && sh->io.records <= YIELD_RECORDS_MAX;
    sh->io_submit_ns = cs_now_ns();
}

static void wal_completed(struct shard *sh, uint64_t tag, int res)
{
    if (sh->io_wait == 0)
        return; /* given up on by ring_failed */
    if (tag == TAG_WRITE && res >= 0 && (size_t)res != sh->io.len)
        res = -EIO; /* a short write: the rest of the frame never reached the file */
    if (res < 0 && sh->io_res == 0 && res != -ECANCELED)
        sh->io_res = res;
    if (--sh->io_wait > 0)
        return;
    if (sh->io_res) {
        frame_failed(sh, sh->io_res, true);
        return;
    }
    wal_io_done(&sh->wal);
    if (sh->undo_on)
        undo_release(sh, &sh->undo[sh->wal.open ^ 1u]);
    sh->written_lsn = sh->io.last_lsn;
    sh->stats.wal_frames++;
    sh->stats.wal_records += sh->io.records;
    sh->stats.wal_bytes += sh->io.frame_bytes;
    hist_record_sw(&sh->hists[SHARD_HIST_FRAME_BYTES], sh->io.frame_bytes);
    sh->wal_bytes_since_ckpt += sh->io.frame_bytes;
    if (sh->cfg.checkpoint_wal_bytes && sh->wal_bytes_since_ckpt >= sh->cfg.checkpoint_wal_bytes &&
        !sh->ckpt && !sh->stopping && shard_ckpt_start(sh) != 0)
        sh->wal_bytes_since_ckpt = 0; /* try again after as much WAL again */
    if (sh->cfg.durability == SHARD_SYNC) {
        shard_hist_since(sh, SHARD_HIST_WAL_SYNC, sh->io_submit_ns);
        sh->stats.wal_syncs++;
        sh->durable_lsn = sh->io.last_lsn;
        views_publish_cap(sh, &sh->cap[sh->wal.open ^ 1u]);
        pending_complete(sh);
    }
}

/* Async mode: make written frames durable every sync_interval_ms (and when stopping). */
static void sync_tick(struct shard *sh)
{
    if (sh->cfg.durability != SHARD_ASYNC || sh->io_error)
        return;
    bool dirty = sh->written_lsn > sh->durable_lsn;
    if (dirty && (sh->sync_due || sh->stopping) && !sh->fsync_in_flight && !sh->wal.in_flight) {
        if (io_ring_fsync(&sh->ring, sh->wal.fd, TAG_FSYNC) == 0) {
            sh->fsync_in_flight = true;
            sh->fsync_lsn = sh->written_lsn;
            sh->fsync_submit_ns = cs_now_ns();
            sh->sync_due = false;
        }
    }
    if (dirty && !sh->sync_armed && !sh->sync_due && !sh->stopping) {
        uint32_t ms = sh->cfg.sync_interval_ms;
        sh->sync_ts.tv_sec = ms / 1000u;
        sh->sync_ts.tv_nsec = (long long)(ms % 1000u) * 1000000;
        sh->sync_armed = io_ring_timeout(&sh->ring, &sh->sync_ts, TAG_SYNC) == 0;
    }
}

static void handle_event(struct shard *sh, const struct io_event *ev)
{
    if (ev->tag & SHARD_GUEST_TAG) {
        if (sh->guest) /* else a completion after detach: nothing is waiting for it */
            sh->guest->event(sh->guest->arg, &sh->ring, ev->tag, ev->res, ev->flags);
        return;
    }
    switch (ev->tag) {
    case TAG_WAKE:
        cs_assert(io_ring_read8(&sh->ring, sh->efd, &sh->efd_buf, TAG_WAKE) == 0);
        break;
    case TAG_WRITE:
        wal_completed(sh, ev->tag, ev->res);
        break;
    case TAG_DELAY:
        sh->delay_armed = false;
        sh->delay_done = true;
        break;
    case TAG_SYNC:
        sh->sync_armed = false;
        sh->sync_due = true;
        break;
    case TAG_EPOCH:
        sh->epoch_armed = false;
        break;
    case TAG_EXPIRE:
        sh->expire_armed = false;
        sh->expire_due = true;
        break;
    case TAG_HOLD:
        sh->hold_armed = false;
        sh->hold_done |= sh->hold_frame == sh->frame_seq; /* still the frame it was armed for */
        break;
    case TAG_FSYNC:
        sh->fsync_in_flight = false;
        if (ev->res < 0) {
            sh->io_res = ev->res; /* the cause, for the message */
            pending_fail(sh, CS_EIO, true);
            break;
        }
        if (sh->io_error)
            break; /* given up on by ring_failed */
        sh->stats.wal_syncs++;
        sh->durable_lsn = sh->fsync_lsn;
        shard_hist_since(sh, SHARD_HIST_WAL_SYNC, sh->fsync_submit_ns);
        break;
    }
}

/* ---- the loop ---- */

/* Move everything in the inbox to the local queue, oldest first. */
static bool inbox_take(struct shard *sh)
{
    struct ck_stack_entry *e = ck_stack_batch_pop_upmc(&sh->inbox);
    struct shard_req *fifo = NULL;
    for (; e; e = e->next) {
        struct shard_req *r = (struct shard_req *)((char *)e - offsetof(struct shard_req, link));
        r->next = fifo;
        fifo = r;
    }
    sh->queue = fifo;
    return fifo != NULL;
}

static unsigned drain(struct shard *sh)
{
    unsigned n = 0;
    while (n < sh->cfg.batch_max && !sh->stopping) {
        if (sh->wal_on && wal_open_bytes(&sh->wal) >= WAL_FRAME_SOFT_BYTES)
            break;
        if (!sh->queue && !inbox_take(sh))
            break;
        struct shard_req *r = sh->queue;
        sh->queue = r->next;
        shard_exec(sh, r);
        n++;
    }
    if (n)
        sh->stats.loops++;
    return n;
}

static bool work_left(struct shard *sh)
{
    return sh->io_wait > 0 || sh->fsync_in_flight || sh->pending_head || sh->ckpt ||
           (sh->wal_on && !sh->io_error && wal_open_bytes(&sh->wal) > 0) ||
           (sh->cfg.durability == SHARD_ASYNC && !sh->io_error &&
            sh->written_lsn > sh->durable_lsn);
}

/* Block in io_uring unless work may be waiting in the inbox (Dekker order with shard_submit). */
static unsigned wait_count(struct shard *sh, unsigned drained, bool guest_busy)
{
    if (drained == sh->cfg.batch_max || guest_busy || (sh->expire_due && !sh->stopping))
        return 0;
    if (sh->wal_on && !sh->wal.in_flight && !sh->io_error && wal_open_bytes(&sh->wal) > 0 &&
        !sh->delay_armed && !(sh->hold_armed && frame_held(sh)))
        return 0;
    if (sh->stopping && !work_left(sh))
        return 0;
    /* Sync mode, a frame in flight: for up to yield_us after its submission the loop gives the
     * CPU away with sched_yield and looks again, instead of sleeping. Its CPU stays awake, so
     * neither the write's completion nor a submitter has to wake a halted CPU (on a virtual
     * machine that took a third of a lone writer's latency), and any runnable thread still gets
     * the CPU at once. The completion is reaped on the way back from the yield (task work).
     * Only for small frames (a few writers): with many writers the yielding shard kept its CPU
     * busy under the callers it had to share it with, and 64-writer throughput swung between
     * 0.7x and 1.2x of sleeping at once. */
    if (sh->io_yield && sh->wal.in_flight &&
        cs_now_ns() - sh->io_submit_ns < (uint64_t)sh->cfg.yield_us * 1000u) {
        sched_yield();
        return 0;
    }
    atomic_exchange(&sh->sleeping, 1);
    bool ckpt_ready = sh->ckpt && atomic_load(&sh->ckpt_written);
    if ((!sh->stopping &&
         (sh->queue || __atomic_load_n(&sh->inbox.head, __ATOMIC_ACQUIRE) != NULL)) ||
        ckpt_ready || __atomic_load_n(&sh->view_free.head, __ATOMIC_ACQUIRE) != NULL ||
        (sh->guest && sh->guest->pending(sh->guest->arg))) {
        atomic_store(&sh->sleeping, 0);
        return 0;
    }
    /* retired views wait for readers to leave: look again soon rather than at the next request */
    if (sh->retired && !sh->epoch_armed) {
        sh->epoch_ts.tv_sec = 0;
        sh->epoch_ts.tv_nsec = EPOCH_POLL_NS;
        sh->epoch_armed = io_ring_timeout(&sh->ring, &sh->epoch_ts, TAG_EPOCH) == 0;
    }
    return 1;
}

/* Once the trees shrank by TRIM_BYTES since their peak (a large batch's or frame's old nodes
 * released, views retired, a collection dropped), hand the arena's free pages back to the
 * system: otherwise a bulk load that copies most of a tree once (copy-on-write for rollback)
 * keeps twice the tree's memory resident. Costs one madvise pass over what was freed. */
static void mem_trim(struct shard *sh)
{
    if (sh->tree_bytes_peak - sh->tree_bytes < TRIM_BYTES)
        return;
    cs_mem_arena_purge(sh->arena);
    sh->tree_bytes_peak = sh->tree_bytes;
}

/* io_uring itself failed (not one operation: the ring). Whatever is in flight may or may not
 * complete; the shard cannot count on it. Fail-stop as for a failed frame: the frames' writes are
 * taken back (readers never see them), everything waiting fails with CS_EIO, the shard turns
 * read-only, and the loop stops waiting for the lost completions so that close does not hang. A
 * completion that still arrives for them is ignored. */
static void ring_failed(struct shard *sh, int err)
{
    if (!sh->io_error)
        fprintf(stderr, "cstore: shard %u: io_uring failed (%s); the shard turns read-only\n",
                sh->cfg.index, cs_strerror(err));
    bool in_flight = sh->io_wait > 0;
    sh->io_wait = 0;
    sh->fsync_in_flight = false;
    if (sh->wal_on && (in_flight || wal_open_bytes(&sh->wal) > 0))
        frame_failed(sh, CS_EIO, in_flight);
    else
        pending_fail(sh, CS_EIO, true);
    sh->io_res = err; /* the cause */
}

/* After the loop: nothing executes again. Requests still queued, and any a submitter pushes from
 * now on, complete with CS_ECLOSED (shard_submit completes those itself once it sees closed). */
static void refuse_inbox(struct shard *sh)
{
    struct ck_stack_entry *e = ck_stack_batch_pop_upmc(&sh->inbox);
    for (uint64_t i = 0; e; i++) {
        cs_assert(i < UINT32_MAX);
        struct ck_stack_entry *next = e->next;
        struct shard_req *r = (struct shard_req *)((char *)e - offsetof(struct shard_req, link));
        req_complete(r, CS_ECLOSED);
        e = next;
    }
}

static void refuse_rest(struct shard *sh)
{
    txn_close(sh);                  /* parked requests join the queue */
    atomic_store(&sh->sleeping, 0); /* nobody wakes a loop that is gone */
    atomic_store(&sh->closed, 1);   /* seq_cst: before the pop, against shard_submit's load */
    while (sh->queue) {
        struct shard_req *r = sh->queue;
        sh->queue = r->next;
        req_complete(r, CS_ECLOSED);
    }
    refuse_inbox(sh);
}

static void loop(struct shard *sh)
{
    struct io_event ev[EVENTS_MAX];
    for (;;) {
        unsigned drained = drain(sh);
        expire_poll(sh);
        wal_submit(sh);
        sync_tick(sh);
        views_maybe_publish(sh);
        views_reclaim(sh);
        mem_trim(sh);
        if (sh->stopping && !work_left(sh))
            break;
        bool guest_busy = sh->guest && sh->guest->poll(sh->guest->arg, &sh->ring);
        unsigned wait = wait_count(sh, drained, guest_busy);
        int n = io_ring_run(&sh->ring, wait, ev, EVENTS_MAX);
        atomic_store(&sh->sleeping, 0);
        if (n < 0) {
            ring_failed(sh, n);
            continue;
        }
        for (int i = 0; i < n; i++)
            handle_event(sh, &ev[i]);
        shard_ckpt_poll(sh);
        if (sh->txn_settling)
            txn_poll(sh);
    }
}

/* ---- thread start and stop ---- */

static void shard_free_colls(struct shard *sh)
{
    for (unsigned b = 0; sh->by_name && b < COLL_BUCKETS; b++) {
        struct shard_coll *c = sh->by_name[b];
        while (c) {
            struct shard_coll *next = c->next_name;
            btree_destroy(&c->tree);
            cs_mem_free(c);
            c = next;
        }
    }
    free(sh->by_name);
    free(sh->by_id);
}

/* No reader is left (the database is closing): release every view and deferral. */
static void views_teardown(struct shard *sh)
{
    if (!sh->erec)
        return;
    for (int i = 0; i < 2; i++) {
        views_discard_cap(sh, &sh->cap[i]);
        free(sh->cap[i].e);
    }
    if (sh->by_name)
        for (unsigned b = 0; b < COLL_BUCKETS; b++)
            for (struct shard_coll *c = sh->by_name[b]; c; c = c->next_name)
                view_install(sh, c, NULL);
    while (sh->dirty) {
        struct shard_coll *c = sh->dirty;
        sh->dirty = c->next_dirty;
        c->dirty = false;
        if (c->view) /* a dropped collection is not in the catalog any more */
            view_install(sh, c, NULL);
        coll_unref(sh, c);
    }
    ck_epoch_barrier(sh->erec); /* runs the retirements (which may defer frees)... */
    views_reclaim(sh);
    ck_epoch_barrier(sh->erec); /* ...and those */
    cs_assert(sh->retired == 0);
    cs_epoch_record_free(sh->erec);
    sh->erec = NULL;
}

static int shard_setup(struct shard *sh)
{
    if (sh->cfg.cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(sh->cfg.cpu, &set);
        int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
        if (rc)
            return -rc;
    }
    int rc = cs_mem_arena_create(&sh->arena);
    if (rc)
        return rc;
    sh->erec = cs_epoch_record_new();
    if (!sh->erec)
        return -ENOMEM;
    sh->by_name = calloc(COLL_BUCKETS, sizeof(*sh->by_name));
    sh->by_id = calloc(COLL_BUCKETS, sizeof(*sh->by_id));
    if (!sh->by_name || !sh->by_id)
        return -ENOMEM;
    rc = io_ring_init(&sh->ring, sh->cfg.fault);
    if (rc)
        return rc;
    /* durability=none still loads what an earlier open stored, reading only: it writes nothing,
     * so the folder keeps what it had and the in-memory changes end with the process. */
    bool in_memory = sh->cfg.durability == SHARD_NONE;
    if (in_memory)
        sh->cfg.open_mode = WAL_OPEN_VERIFY;
    struct wal_config wc = {
        .dir = sh->dir,
        .shard = sh->cfg.index,
        .arena = sh->arena,
        .segment_bytes = sh->cfg.wal_segment_bytes,
        .compress_bytes = sh->cfg.wal_compress_bytes,
        .fault = sh->cfg.fault,
        .mode = sh->cfg.open_mode,
        .fresh_segment = sh->cfg.fresh_segment,
    };
    struct wal_recovery info;
    memset(&info, 0, sizeof(info));
    uint64_t t0 = cs_now_ns();
    uint32_t next_id = 0;
    bool salvaged = false;
    unsigned ckpt_flags = sh->cfg.open_mode == WAL_OPEN_SALVAGE ? CKPT_LOAD_SALVAGE : 0u;
    if (sh->cfg.open_mode == WAL_OPEN_VERIFY)
        ckpt_flags |= CKPT_LOAD_READONLY;
    rc = ckpt_load(sh->cfg.fault, sh->dir, sh->cfg.index, shard_load_coll, shard_load_rec,
                   txn_ckpt_load, sh, &sh->ckpt_lsn, &next_id, ckpt_flags, &salvaged, info.message,
                   sizeof(info.message));
    snprintf(sh->start_msg, sizeof(sh->start_msg), "%s", info.message);
    if (!rc && sh->txn_load_left) {
        snprintf(sh->start_msg, sizeof(sh->start_msg),
                 "a transaction in the checkpoint lacks %u of its writes", sh->txn_load_left);
        rc = CS_ECORRUPT;
    }
    if (rc)
        return rc;
    if (sh->start_msg[0]) /* salvaged, or an older checkpoint loaded */
        fprintf(stderr, "cstore: shard %u: %s\n", sh->cfg.index, sh->start_msg);
    sh->ckpt_salvaged = salvaged;
    memset(info.message, 0, sizeof(info.message));
    if (next_id > sh->next_coll_id)
        sh->next_coll_id = next_id;
    sh->stats.checkpoint_lsn = sh->ckpt_lsn;
    wc.base_lsn = sh->ckpt_lsn;
    rc = wal_open(&sh->wal, &wc, shard_replay_apply, sh, &info);
    sh->stats.recovery_us = (cs_now_ns() - t0) / 1000u;
    if (info.message[0]) {
        size_t n = strlen(sh->start_msg);
        snprintf(sh->start_msg + n, sizeof(sh->start_msg) - n, "%s%s", n ? "; " : "", info.message);
    }
    if (info.torn_bytes && !rc)
        fprintf(stderr, "cstore: shard %u: %s (%" PRIu64 " bytes)\n", sh->cfg.index, info.message,
                info.torn_bytes);
    if (rc)
        return rc;
    if (in_memory)
        wal_close(&sh->wal);
    sh->wal_on = !in_memory;
    sh->undo_on = sh->cfg.durability == SHARD_SYNC;
    sh->frame_seq = 1;
    sh->stats.recovered_records = info.records;
    sh->stats.recovery_torn_bytes = info.torn_bytes;
    sh->stats.recovery_salvaged_bytes = info.salvaged_bytes;
    if (info.salvaged_bytes || info.salvaged_segments)
        fprintf(stderr, "cstore: shard %u: %s\n", sh->cfg.index, info.message);
    sh->applied_lsn = sh->durable_lsn = sh->written_lsn = cs_max_u64(info.last_lsn, sh->ckpt_lsn);
    sh->data_lsn = sh->applied_lsn;
    views_publish_live(sh); /* what was recovered is durable */
    __atomic_store_n(&sh->ack_seq, sh->wseq, __ATOMIC_RELEASE);
    return 0;
}

static void shard_teardown(struct shard *sh)
{
    if (sh->wal_on) {
        if (!sh->io_error && sh->written_lsn > sh->durable_lsn &&
            io_file_sync(sh->cfg.fault, sh->wal.fd))
            sh->io_error = CS_EIO;
        wal_close(&sh->wal);
    }
    if (sh->ring.uring.ring_fd > 0)
        io_ring_exit(&sh->ring);
    for (int i = 0; i < 2; i++) {
        undo_release(sh, &sh->undo[i]);
        undo_free(&sh->undo[i]);
    }
    views_teardown(sh);
    shard_free_colls(sh);
    expire_free(sh);
    cs_mem_arena_release(sh->arena);
    sh->arena = 0;
}

static void *shard_main(void *arg)
{
    struct shard *sh = arg;
    sh->owner = pthread_self();
    int rc = shard_setup(sh);
    sh->start_rc = rc;
    sh->stats.shard = sh->cfg.index;
    sh->stats.cpu = sh->cfg.cpu;
    if (!rc)
        cs_assert(io_ring_read8(&sh->ring, sh->efd, &sh->efd_buf, TAG_WAKE) == 0);
    sem_post(&sh->start_sem);
    if (rc) {
        shard_teardown(sh);
        return NULL;
    }
    if (sh->ckpt_salvaged && shard_ckpt_start(sh) != 0)
        fprintf(stderr,
                "cstore: shard %u: could not start the checkpoint that replaces the "
                "salvaged one\n",
                sh->cfg.index);
    io_fault_thread_enter(sh->cfg.fault); /* tests: the plan's allocation failures, if any */
    loop(sh);
    io_fault_thread_leave(sh->cfg.fault);
    refuse_rest(sh);
    struct shard_req *stop = sh->stop_req;
    shard_teardown(sh);
    stop->rc = sh->io_error;
    stop->done(stop);
    return NULL;
}

int shard_launch(const struct shard_config *cfg, struct shard **out)
{
    cs_assert(cfg->batch_max > 0);
    *out = NULL;
    struct shard *sh = aligned_alloc(64, sizeof(*sh));
    if (!sh)
        return -ENOMEM;
    memset(sh, 0, sizeof(*sh));
    sh->efd = -1;
    sh->cfg = *cfg;
    if (snprintf(sh->dir, sizeof(sh->dir), "%s", cfg->dir) >= (int)sizeof(sh->dir)) {
        free(sh);
        return -ENAMETOOLONG;
    }
    sh->cfg.dir = sh->dir;
    ck_stack_init(&sh->inbox);
    int rc = 0;
    sh->efd = eventfd(0, EFD_CLOEXEC);
    if (sh->efd < 0)
        rc = -errno;
    if (!rc && sem_init(&sh->start_sem, 0, 0) != 0)
        rc = -errno;
    if (!rc) {
        rc = -pthread_create(&sh->thread, NULL, shard_main, sh);
        if (rc)
            sem_destroy(&sh->start_sem);
    }
    if (rc) {
        if (sh->efd >= 0)
            close(sh->efd);
        free(sh);
        return rc;
    }
    sh->launched = true;
    *out = sh;
    return 0;
}

const char *shard_start_message(const struct shard *sh)
{
    return sh->start_msg;
}

void shard_free(struct shard *sh)
{
    if (!sh)
        return;
    cs_assert(!sh->launched);
    cs_assert(!sh->started);
    free(sh);
}

int shard_await(struct shard *sh)
{
    cs_assert(sh->launched);
    while (sem_wait(&sh->start_sem) != 0 && errno == EINTR)
        ;
    sem_destroy(&sh->start_sem);
    sh->launched = false;
    int rc = sh->start_rc;
    if (rc) {
        pthread_join(sh->thread, NULL);
        close(sh->efd);
        return rc;
    }
    sh->started = true;
    return 0;
}

void shard_hist_read(const struct shard *sh, enum shard_hist which, struct hist *dst)
{
    cs_assert((unsigned)which < SHARD_HISTS);
    hist_merge(dst, &sh->hists[which]);
}

void shard_submit(struct shard *sh, struct shard_req *r)
{
    if (SHARD_TIMED(r->op))
        r->submit_ns = cs_now_ns();
    ck_stack_push_upmc(&sh->inbox, &r->link);
    /* Dekker with refuse_rest: either its pop sees this push, or this load sees closed */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&sh->closed)) {
        refuse_inbox(sh);
        return;
    }
    shard_wake(sh);
}

void shard_wake(struct shard *sh)
{
    /* Both sides exchange the same flag, so the exchanges are totally ordered: if the shard's
     * came first, this one sees 1 and wakes it; if this one came first, the shard's exchange
     * reads the 0 written here and so sees the work published before it. */
    if (atomic_exchange(&sh->sleeping, 0)) {
        uint64_t one = 1;
        ssize_t n = write(sh->efd, &one, sizeof(one));
        cs_assert(n == (ssize_t)sizeof(one));
    }
}

static void stop_done(struct shard_req *r)
{
    (void)r;
}

int shard_stop(struct shard *sh)
{
    if (!sh->started)
        return 0;
    struct shard_req r = {.op = SHARD_STOP, .done = stop_done};
    shard_submit(sh, &r);
    pthread_join(sh->thread, NULL);
    close(sh->efd);
    sh->started = false;
    return r.rc;
}
