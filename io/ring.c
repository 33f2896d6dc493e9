/* io_uring wrapper for a shard's event loop.
 *
 * Each shard owns one ring, created and used by its own thread only (IORING_SETUP_SINGLE_ISSUER
 * where the kernel has it). What goes through it: the WAL's group-commit writes (in sync mode one
 * write with RWF_DSYNC: one submission and one completion per frame; the kernel makes the range
 * durable as fdatasync would, and on the WAL's direct-I/O segments it does so without handing the
 * write to an io-wq worker, which a linked IORING_OP_FSYNC always needs), async-mode fdatasyncs,
 * the eventfd read that wakes an idle shard, and timers (group-commit delay, async-mode sync
 * interval).
 *
 * Tags identify operations in completions; the caller chooses them.
 *
 * SOCKETS. A guest of the shard loop (the server) accepts, receives and sends through the same
 * ring (io_ring_accept, io_ring_recv, io_ring_send, io_ring_cancel). Their preparation submits the
 * queue when it is full instead of failing, so a guest with many connections never starves the
 * loop's own WAL write or wake read of a submission entry.
 *
 * FAULT INJECTION. With r->fault == NULL (the default) the paths below pay one pointer test
 * each. With a plan (io/fault.c decides, this file acts), before each write and fdatasync is
 * prepared:
 *   - latency_us: the shard thread sleeps (usleep) that long before preparing the operation. It
 *     is deliberately simple: the whole shard stalls, like a loop waiting on a slow device; an
 *     RWF_DSYNC write (write and sync in one operation) sleeps once.
 *   - write EIO / ENOSPC: nothing is submitted; io_ring_run delivers a synthetic completion with
 *     the same tag: -EIO (or -ENOSPC). While synthetic completions wait, io_ring_run does not
 *     block.
 *   - SHORT and TORN_CRASH cut the write within its fresh bytes (the plan draws the cut over
 *     fresh_len; the bytes before fresh_off are always part of the prefix). Direct I/O refuses
 *     odd byte counts, so the file is first switched to page-cache writes (O_DIRECT dropped;
 *     the shard is read-only after either fault anyway).
 *   - SHORT: a write of the prefix only is submitted; the kernel reports the short count, the
 *     caller sees a short write.
 *   - TORN_CRASH: the prefix is written synchronously with pwrite(2), then the process sends
 *     itself SIGKILL: a crash in the middle of a write. The page cache keeps the prefix.
 *   - fdatasync EIO (a sync write's or a lone fdatasync): the operation is submitted and really
 *     runs, but its completion is rewritten to -EIO (remembered by tag in fsync_fail[], consumed
 *     by the first completion with that tag). A sync write counts as an fdatasync call only when
 *     the plan did not fail, cut or tear the write.
 *   - powercut (a journal in the plan): each write and fdatasync first counts towards the cut
 *     (io_fault_powercut_tick may end the process there); a write is journaled with its old
 *     bytes before it is submitted (IO_CUT_RING, and IO_CUT_DSYNC for RWF_DSYNC), and its
 *     successful completion is journaled when it is reaped; an fdatasync takes a journal mark
 *     when it is submitted and is journaled as done when it is reaped with success (after a
 *     plan-made -EIO it is not). Both are remembered by tag in cut[] meanwhile.
 * At most one WAL frame is in flight per shard, so IO_RING_SYNTH_MAX entries are plenty; when
 * full, the preparing call returns CS_EFULL like a full submission queue. */
#include "ring.h"

#include "cstore.h"
#include "fault.h"
#include "powercut.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int io_ring_init(struct io_ring *r, struct io_fault *fault)
{
    memset(r, 0, sizeof(*r));
    r->fault = fault;
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN;
    int rc = io_uring_queue_init_params(IO_RING_ENTRIES, &r->uring, &p);
    if (rc == -EINVAL) {
        /* Older kernels lack these flags: fall back to a plain ring. */
        memset(&p, 0, sizeof(p));
        rc = io_uring_queue_init_params(IO_RING_ENTRIES, &r->uring, &p);
    }
    return rc;
}

void io_ring_exit(struct io_ring *r)
{
    io_uring_queue_exit(&r->uring);
}

static struct io_uring_sqe *ring_sqe(struct io_ring *r)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);
    if (sqe)
        r->queued++;
    return sqe;
}

/* A submission entry for a socket operation: when the queue is full, submit it first. */
static int ring_sqe_net(struct io_ring *r, struct io_uring_sqe **out)
{
    struct io_uring_sqe *sqe = ring_sqe(r);
    if (!sqe) {
        int rc = io_uring_submit(&r->uring);
        if (rc < 0)
            return rc;
        r->queued = 0;
        sqe = ring_sqe(r);
        if (!sqe)
            return CS_EFULL;
    }
    *out = sqe;
    return 0;
}

int io_ring_accept(struct io_ring *r, int fd, uint64_t tag)
{
    struct io_uring_sqe *sqe;
    int rc = ring_sqe_net(r, &sqe);
    if (rc)
        return rc;
    io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

int io_ring_recv(struct io_ring *r, int fd, void *buf, size_t len, uint64_t tag)
{
    struct io_uring_sqe *sqe;
    int rc = ring_sqe_net(r, &sqe);
    if (rc)
        return rc;
    io_uring_prep_recv(sqe, fd, buf, len, 0);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

int io_ring_send(struct io_ring *r, int fd, const void *buf, size_t len, uint64_t tag)
{
    struct io_uring_sqe *sqe;
    int rc = ring_sqe_net(r, &sqe);
    if (rc)
        return rc;
    io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

int io_ring_cancel(struct io_ring *r, uint64_t tag, uint64_t cancel_tag)
{
    struct io_uring_sqe *sqe;
    int rc = ring_sqe_net(r, &sqe);
    if (rc)
        return rc;
    io_uring_prep_cancel64(sqe, tag, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, cancel_tag);
    return 0;
}

/* Prepare a write as given (with sync: RWF_DSYNC), no fault applied. */
static int ring_write_plain(struct io_ring *r, int fd, const void *buf, size_t len, uint64_t off,
                            bool sync, uint64_t tag)
{
    struct io_uring_sqe *sqe = ring_sqe(r);
    if (!sqe)
        return CS_EFULL;
    io_uring_prep_write(sqe, fd, buf, (unsigned)len, off);
    if (sync)
        sqe->rw_flags = RWF_DSYNC;
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

static void ring_synth(struct io_ring *r, uint64_t tag, int res)
{
    cs_assert(r->synth_count < IO_RING_SYNTH_MAX);
    r->synth[r->synth_count].tag = tag;
    r->synth[r->synth_count].res = res;
    r->synth[r->synth_count].flags = 0;
    r->synth_count++;
}

static void ring_latency(struct io_ring *r)
{
    uint32_t us = io_fault_latency_us(r->fault);
    if (us)
        usleep(us);
}

/* Make later writes of fd go through the page cache (drop O_DIRECT), so that a write of any
 * byte count is possible: a fault plan cuts writes at arbitrary bytes, which direct I/O refuses.
 * Best effort: on failure the write is submitted as it is and may fail with -EINVAL. */
static void ring_buffered(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0 && (flags & O_DIRECT))
        (void)fcntl(fd, F_SETFL, flags & ~O_DIRECT);
}

/* A torn write followed by a crash: the prefix reaches the page cache, then SIGKILL. */
CS_NORETURN static void ring_torn_crash(int fd, const void *buf, size_t prefix, uint64_t off)
{
    ring_buffered(fd);
    if (prefix > 0 && pwrite(fd, buf, prefix, (off_t)off) < 0)
        abort(); /* the crash is what matters; abort is a crash too */
    kill(getpid(), SIGKILL);
    for (unsigned i = 0; i < 1000; i++)
        pause(); /* SIGKILL is delivered before kill() returns; this is belt and braces */
    abort();
}

/* Remember a journaled operation in flight (room was checked by the caller). */
static void ring_cut_add(struct io_ring *r, uint64_t tag, uint64_t ino, uint64_t seq, uint64_t mark,
                         bool fsync)
{
    cs_assert(r->cut_count < IO_RING_SYNTH_MAX);
    r->cut[r->cut_count++] =
        (struct io_ring_cut){.tag = tag, .seq = seq, .mark = mark, .ino = ino, .fsync = fsync};
}

/* Journal a write about to be submitted: [off, off + len) of fd. */
static void ring_cut_write(struct io_ring *r, int fd, size_t len, uint64_t off, bool sync,
                           uint64_t tag)
{
    struct io_powercut *cut = io_fault_powercut(r->fault);
    if (!cut)
        return;
    uint64_t seq = io_powercut_write(cut, fd, off, len, IO_CUT_RING | (sync ? IO_CUT_DSYNC : 0));
    ring_cut_add(r, tag, 0, seq, 0, false);
}

/* A completion reaped: journal it when it belongs to a journaled operation; consumes the
 * entry. */
static void ring_cut_done(struct io_ring *r, const struct io_event *ev)
{
    struct io_powercut *cut = io_fault_powercut(r->fault);
    for (unsigned i = 0; i < r->cut_count; i++) {
        if (r->cut[i].tag != ev->tag)
            continue;
        if (ev->res >= 0 && r->cut[i].fsync)
            io_powercut_synced(cut, r->cut[i].ino, r->cut[i].mark);
        else if (ev->res >= 0)
            io_powercut_completed(cut, r->cut[i].seq);
        r->cut[i] = r->cut[--r->cut_count];
        return;
    }
}

static int ring_write_faulty(struct io_ring *r, int fd, const void *buf, size_t len, uint64_t off,
                             size_t fresh_off, size_t fresh_len, bool sync, uint64_t tag)
{
    if (r->synth_count == IO_RING_SYNTH_MAX || r->fsync_fail_count == IO_RING_SYNTH_MAX ||
        r->cut_count == IO_RING_SYNTH_MAX)
        return CS_EFULL;
    if (io_uring_sq_space_left(&r->uring) == 0)
        return CS_EFULL;
    io_fault_powercut_tick(r->fault);
    ring_latency(r);
    size_t prefix = fresh_len;
    enum io_fault_action act = io_fault_on_write(r->fault, fresh_len, &prefix);
    if (act == IO_FAULT_TORN_CRASH || act == IO_FAULT_SHORT) {
        cs_assert(prefix < fresh_len);
        prefix += fresh_off; /* the cut falls within the fresh bytes */
    }
    switch (act) {
    case IO_FAULT_EIO:
    case IO_FAULT_ENOSPC:
        ring_synth(r, tag, act == IO_FAULT_EIO ? -EIO : -ENOSPC);
        return 0;
    case IO_FAULT_TORN_CRASH:
        cs_assert(prefix < len);
        ring_torn_crash(fd, buf, prefix, off);
    case IO_FAULT_SHORT:
        cs_assert(prefix < len);
        ring_buffered(fd);
        ring_cut_write(r, fd, prefix, off, sync, tag);
        return ring_write_plain(r, fd, buf, prefix, off, sync, tag);
    case IO_FAULT_NONE:
        break;
    }
    ring_cut_write(r, fd, len, off, sync, tag);
    bool fail_fsync = sync && io_fault_on_fsync(r->fault);
    int rc = ring_write_plain(r, fd, buf, len, off, sync, tag);
    cs_assert(rc == 0); /* room was checked above */
    if (fail_fsync)
        r->fsync_fail[r->fsync_fail_count++] = tag;
    return 0;
}

int io_ring_write(struct io_ring *r, int fd, const void *buf, size_t len, uint64_t off,
                  size_t fresh_off, size_t fresh_len, bool sync, uint64_t tag)
{
    cs_assert(fd >= 0);
    cs_assert(len > 0);
    cs_assert(fresh_len > 0);
    cs_assert(fresh_off + fresh_len <= len);
    if (cs_unlikely(r->fault != NULL))
        return ring_write_faulty(r, fd, buf, len, off, fresh_off, fresh_len, sync, tag);
    return ring_write_plain(r, fd, buf, len, off, sync, tag);
}

int io_ring_fsync(struct io_ring *r, int fd, uint64_t tag)
{
    if (cs_unlikely(r->fault != NULL)) {
        if (r->fsync_fail_count == IO_RING_SYNTH_MAX || r->cut_count == IO_RING_SYNTH_MAX ||
            io_uring_sq_space_left(&r->uring) == 0)
            return CS_EFULL;
        io_fault_powercut_tick(r->fault);
        ring_latency(r);
    }
    struct io_uring_sqe *sqe = ring_sqe(r);
    if (!sqe)
        return CS_EFULL;
    io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data64(sqe, tag);
    if (cs_unlikely(r->fault != NULL) && io_fault_on_fsync(r->fault))
        r->fsync_fail[r->fsync_fail_count++] = tag;
    struct io_powercut *cut = io_fault_powercut(r->fault);
    if (cs_unlikely(cut != NULL))
        ring_cut_add(r, tag, io_powercut_ino(fd), 0, io_powercut_mark(cut), true);
    return 0;
}

int io_ring_read8(struct io_ring *r, int fd, uint64_t *buf, uint64_t tag)
{
    struct io_uring_sqe *sqe = ring_sqe(r);
    if (!sqe)
        return CS_EFULL;
    io_uring_prep_read(sqe, fd, buf, sizeof(*buf), 0);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

int io_ring_timeout(struct io_ring *r, struct __kernel_timespec *ts, uint64_t tag)
{
    struct io_uring_sqe *sqe = ring_sqe(r);
    if (!sqe)
        return CS_EFULL;
    io_uring_prep_timeout(sqe, ts, 0, 0);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

/* Rewrite the completion of an fdatasync that the plan fails; consumes the entry. */
static void ring_fsync_override(struct io_ring *r, struct io_event *ev)
{
    for (unsigned i = 0; i < r->fsync_fail_count; i++) {
        if (r->fsync_fail[i] != ev->tag)
            continue;
        if (ev->res >= 0)
            ev->res = -EIO;
        r->fsync_fail[i] = r->fsync_fail[--r->fsync_fail_count];
        return;
    }
}

/* Move up to max synthetic completions into ev[], oldest first. */
static unsigned ring_take_synth(struct io_ring *r, struct io_event *ev, unsigned max)
{
    unsigned n = r->synth_count < max ? r->synth_count : max;
    memcpy(ev, r->synth, n * sizeof(*ev));
    memmove(r->synth, r->synth + n, (r->synth_count - n) * sizeof(*ev));
    r->synth_count -= n;
    return n;
}

int io_ring_run(struct io_ring *r, unsigned wait_nr, struct io_event *ev, unsigned max)
{
    int rc;
    if (cs_unlikely(r->fault != NULL) && r->synth_count)
        wait_nr = 0; /* synthetic completions are ready: do not block for the kernel's */
    if (r->queued || wait_nr) {
        if (cs_unlikely(r->fault != NULL) && (rc = io_fault_on_op(r->fault, IO_OP_RING)) != 0)
            return rc; /* nothing was submitted or reaped */
        rc = io_uring_submit_and_wait(&r->uring, wait_nr);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
            return rc;
        if (rc >= 0)
            r->queued = 0;
    }
    unsigned n = 0;
    if (cs_unlikely(r->fault != NULL))
        n = ring_take_synth(r, ev, max);
    unsigned reaped = 0;
    unsigned head;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(&r->uring, head, cqe)
    {
        if (n == max)
            break;
        ev[n].tag = io_uring_cqe_get_data64(cqe);
        ev[n].res = cqe->res;
        ev[n].flags = cqe->flags;
        if (cs_unlikely(r->fault != NULL) && r->fsync_fail_count)
            ring_fsync_override(r, &ev[n]);
        if (cs_unlikely(r->fault != NULL) && r->cut_count)
            ring_cut_done(r, &ev[n]);
        n++;
        reaped++;
    }
    io_uring_cq_advance(&r->uring, reaped);
    return (int)n;
}
