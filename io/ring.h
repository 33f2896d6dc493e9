/* The io_uring wrapper a shard's event loop uses: the only place cstore submits to io_uring. */
#ifndef CS_IO_RING_H
#define CS_IO_RING_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define IO_RING_ENTRIES                                                                            \
    256                     /* SQ entries per shard ring: a WAL write, a wake read, timers, and    \
                             * a guest's socket operations (see io_ring_accept) */
#define IO_RING_SYNTH_MAX 8 /* fault injection: synthetic completions / fsync failures queued */

struct io_fault;

/* A completion as the loop sees it. */
struct io_event {
    uint64_t tag;   /* the tag given when the operation was prepared */
    int res;        /* bytes transferred, 0, or -errno */
    uint32_t flags; /* the completion's IORING_CQE_F_* flags (F_MORE: a multishot goes on) */
};

/* Power-cut journal (fault injection): a ring write or fdatasync in flight. */
struct io_ring_cut {
    uint64_t tag;  /* its tag */
    uint64_t seq;  /* write: its journal record (0: not journaled) */
    uint64_t mark; /* fdatasync: the journal mark taken before it was submitted */
    uint64_t ino;  /* fdatasync: its file's inode, taken at submission */
    bool fsync;    /* an fdatasync (else a write) */
};

struct io_ring {
    struct io_uring uring;  /* the kernel ring */
    unsigned queued;        /* SQEs prepared and not yet submitted */
    struct io_fault *fault; /* fault plan applied to writes and fsyncs, or NULL (borrowed) */
    /* Fault injection only (untouched while fault is NULL): */
    struct io_event synth[IO_RING_SYNTH_MAX];  /* completions of operations never submitted */
    unsigned synth_count;                      /* entries of synth[] not yet delivered */
    uint64_t fsync_fail[IO_RING_SYNTH_MAX];    /* tags of submitted fsyncs that must report -EIO */
    unsigned fsync_fail_count;                 /* entries of fsync_fail[] in use */
    struct io_ring_cut cut[IO_RING_SYNTH_MAX]; /* journaled operations in flight (power cuts) */
    unsigned cut_count;                        /* entries of cut[] in use */
};

/* Set up the kernel ring. fault: the database's fault plan, or NULL (off); borrowed for the
 * ring's lifetime. Returns 0 or -errno. */
CS_MUST_CHECK int io_ring_init(struct io_ring *r, struct io_fault *fault);
void io_ring_exit(struct io_ring *r);

/* Prepare a write of len bytes at offset off; with sync it carries RWF_DSYNC (durable, as after
 * an fdatasync, when it completes): one submission, one completion. Only the bytes [fresh_off,
 * fresh_off + fresh_len) of buf differ from what the file already holds; the rest rewrites the
 * same bytes (or zeros over zeros). Returns 0 or CS_EFULL when the submission queue has no room.
 * With a fault plan the caller still sees one completion for the tag, but the write may be cut
 * short within the fresh bytes, never submitted (synthetic -EIO/-ENOSPC), report -EIO for its
 * sync, be delayed, or end the process (see ring.c). */
CS_MUST_CHECK int io_ring_write(struct io_ring *r, int fd, const void *buf, size_t len,
                                uint64_t off, size_t fresh_off, size_t fresh_len, bool sync,
                                uint64_t tag);
/* Prepare an fdatasync of fd alone (a fault plan may delay it or make it report -EIO). */
CS_MUST_CHECK int io_ring_fsync(struct io_ring *r, int fd, uint64_t tag);
/* Prepare an 8-byte read (an eventfd wake-up) into *buf. */
CS_MUST_CHECK int io_ring_read8(struct io_ring *r, int fd, uint64_t *buf, uint64_t tag);
/* Prepare a relative timeout of ts (owned by the caller until it completes). */
CS_MUST_CHECK int io_ring_timeout(struct io_ring *r, struct __kernel_timespec *ts, uint64_t tag);

/* Sockets, for a guest of the shard loop (the server, see shards/shard.h). They never meet the
 * fault plan. When the submission queue is full they first submit what is queued, so they never
 * take the entries the loop needs for its own operations; they fail (-errno) only when that
 * submission fails. */
/* A multishot accept on a listening socket: one completion per connection (res = the new fd),
 * with IORING_CQE_F_MORE while it stays armed. */
CS_MUST_CHECK int io_ring_accept(struct io_ring *r, int fd, uint64_t tag);
/* recv(2) of up to len bytes into buf (borrowed until the completion); res 0 = peer closed. */
CS_MUST_CHECK int io_ring_recv(struct io_ring *r, int fd, void *buf, size_t len, uint64_t tag);
/* send(2) of len bytes of buf (MSG_NOSIGNAL; borrowed until the completion); res may be short. */
CS_MUST_CHECK int io_ring_send(struct io_ring *r, int fd, const void *buf, size_t len,
                               uint64_t tag);
/* Ask the kernel to cancel every operation carrying tag (its completions come back -ECANCELED;
 * the cancel's own completion carries cancel_tag). */
CS_MUST_CHECK int io_ring_cancel(struct io_ring *r, uint64_t tag, uint64_t cancel_tag);

/* Submit what is prepared and wait until at least wait_nr completions are ready, then copy up to
 * max of them into ev[]. Returns the number copied or -errno. Interrupted waits return 0. */
CS_MUST_CHECK int io_ring_run(struct io_ring *r, unsigned wait_nr, struct io_event *ev,
                              unsigned max);

#endif
