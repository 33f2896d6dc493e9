/* io_uring wrapper for a shard's event loop.
 *
 * Each shard owns one ring, created and used by its own thread only (IORING_SETUP_SINGLE_ISSUER
 * where the kernel has it). What goes through it: the WAL's group-commit writes (one write
 * linked with IOSQE_IO_LINK to one fdatasync, so a frame costs one submission), the eventfd
 * read that wakes an idle shard, and timers (group-commit delay, async-mode sync interval).
 *
 * Tags identify operations in completions; the caller chooses them. A linked fdatasync carries
 * tag + 1. If the write is short or fails, the kernel cancels the fdatasync (-ECANCELED), so the
 * caller always sees both completions.
 *
 * The fault-injecting backend of io/ hooks here and in file.c; nothing outside io/ touches
 * io_uring or file descriptors for data. */
#include "ring.h"

#include "cstore.h"

#include <errno.h>
#include <string.h>

int io_ring_init(struct io_ring *r)
{
    memset(r, 0, sizeof(*r));
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

int io_ring_write(struct io_ring *r, int fd, const void *buf, size_t len, uint64_t off, bool sync,
                  uint64_t tag)
{
    cs_assert(fd >= 0);
    cs_assert(len > 0);
    if (io_uring_sq_space_left(&r->uring) < (sync ? 2u : 1u))
        return CS_EFULL;
    struct io_uring_sqe *sqe = ring_sqe(r);
    io_uring_prep_write(sqe, fd, buf, (unsigned)len, off);
    io_uring_sqe_set_data64(sqe, tag);
    if (sync) {
        sqe->flags |= IOSQE_IO_LINK;
        sqe = ring_sqe(r);
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
        io_uring_sqe_set_data64(sqe, tag + 1);
    }
    return 0;
}

int io_ring_fsync(struct io_ring *r, int fd, uint64_t tag)
{
    struct io_uring_sqe *sqe = ring_sqe(r);
    if (!sqe)
        return CS_EFULL;
    io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data64(sqe, tag);
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

int io_ring_run(struct io_ring *r, unsigned wait_nr, struct io_event *ev, unsigned max)
{
    int rc;
    if (r->queued || wait_nr) {
        rc = io_uring_submit_and_wait(&r->uring, wait_nr);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
            return rc;
        if (rc >= 0)
            r->queued = 0;
    }
    unsigned n = 0;
    unsigned head;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(&r->uring, head, cqe)
    {
        if (n == max)
            break;
        ev[n].tag = io_uring_cqe_get_data64(cqe);
        ev[n].res = cqe->res;
        n++;
    }
    io_uring_cq_advance(&r->uring, n);
    return (int)n;
}
