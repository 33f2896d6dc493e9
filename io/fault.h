/* Fault injection for cstore's I/O: a per-database plan of failures that io/ applies to the
 * WAL's writes and fdatasyncs, to every file and folder operation of io/file.c, to the shard
 * threads' allocations, and a power-cut mode that journals what a cut could undo (io/powercut.h).
 * Off by default: with no plan (NULL) the I/O paths pay one pointer test. Seeded and
 * reproducible: the same spec and the same sequence of I/O calls inject the same faults. Shared
 * by every shard of a database (thread-safe). */
#ifndef CS_IO_FAULT_H
#define CS_IO_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct io_fault;

/* What to do to one write. */
enum io_fault_action {
    IO_FAULT_NONE,       /* write normally */
    IO_FAULT_EIO,        /* fail with -EIO, write nothing */
    IO_FAULT_SHORT,      /* write only *prefix bytes and report that count (a short write) */
    IO_FAULT_TORN_CRASH, /* write only *prefix bytes, then kill the process (SIGKILL) */
    IO_FAULT_ENOSPC,     /* fail with -ENOSPC, write nothing */
};

/* Parse a spec, e.g. "seed=7,write_eio=20" (the 20th write fails) or "fsync_eio=1%" (each
 * fdatasync fails with probability 1%). Keys: seed, write_eio, fsync_eio, short_write,
 * torn_write, enospc (preallocations), write_enospc (writes), latency_us (added to every write
 * and fsync); create_eio, read_eio, file_write_eio, file_sync_eio, dirsync_eio, rename_eio,
 * unlink_eio, list_eio (the operations of io/file.c); alloc_fail (shard allocations); txn_crash,
 * txn_ckpt_crash; powercut_log=PATH and powercut (the power-cut journal and the kill). Bit flips
 * are not here (bit flips at rest are done by cstore-fault on closed files). A value N means "the
 * Nth such call" (1-based, across the database, fires once), N% or N.M% a probability per call.
 * io/fault.c describes the grammar and the counters. With powercut_log the journal is created
 * (truncated) here. Returns 0, CS_EOPTVAL on a malformed spec, -ENOMEM, or the -errno of
 * creating the journal. */
CS_MUST_CHECK int io_fault_create(const char *spec, struct io_fault **out);
void io_fault_destroy(struct io_fault *f);

/* Decide the fate of the next write of len bytes; for SHORT and TORN_CRASH, *prefix receives the
 * byte count that reaches the file (0 <= *prefix < len). */
enum io_fault_action io_fault_on_write(struct io_fault *f, size_t len, size_t *prefix);
/* true: the next fdatasync fails with -EIO. */
bool io_fault_on_fsync(struct io_fault *f);
/* At a cross-shard commit's decision: 0 go on, 1 die now (txn_crash), 2 checkpoint every
 * participant, then die (txn_ckpt_crash). f may be NULL. */
int io_fault_on_txn_decide(struct io_fault *f);
/* true: the next preallocation fails with -ENOSPC. */
bool io_fault_on_allocate(struct io_fault *f);
/* Microseconds of latency to add to each write and fsync (0 = none). */
uint32_t io_fault_latency_us(const struct io_fault *f);

/* The file and folder operations of io/file.c, for the plan to fail (or record) each kind. */
enum io_op {
    IO_OP_CREATE,   /* io_file_open with O_CREAT */
    IO_OP_READ,     /* io_file_pread, io_file_read_at, io_file_read_all */
    IO_OP_WRITE,    /* io_file_pwrite, io_file_zero */
    IO_OP_SYNC,     /* io_file_sync (fdatasync of a file) */
    IO_OP_DIR_SYNC, /* io_dir_sync */
    IO_OP_RENAME,   /* io_file_rename, io_file_publish */
    IO_OP_UNLINK,   /* io_file_unlink */
    IO_OP_LIST,     /* io_dir_list, io_file_written */
    IO_OP_RING,     /* io_ring_run: the io_uring enter call itself fails */
};
/* The fate of the next file operation of kind op: 0 (go ahead) or the -errno it fails with
 * before it reaches the system. With a powercut trigger, an operation that changes the disk
 * may end the process (SIGKILL) before anything else happens. */
int io_fault_on_op(struct io_fault *f, enum io_op op);

/* The power-cut journal of the plan, or NULL when f is NULL or has no powercut_log. Lives as
 * long as the plan. */
struct io_powercut *io_fault_powercut(const struct io_fault *f);
/* Count one journaled disk operation (a ring write or fdatasync; io_fault_on_op does it for the
 * others) and kill the process (SIGKILL) when the powercut trigger fires for it. */
void io_fault_powercut_tick(struct io_fault *f);

/* Install the plan's alloc_fail injector on the calling thread (cs_mem_fail_set), when the plan
 * has one; f may be NULL (nothing happens). The plan must outlive the installation: call
 * io_fault_thread_leave on the same thread before it is destroyed. */
void io_fault_thread_enter(struct io_fault *f);
void io_fault_thread_leave(struct io_fault *f);

#endif
