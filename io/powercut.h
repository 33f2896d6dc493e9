/* Power-cut simulation (LazyFS-style) for the fault backend: while a database runs with
 * powercut_log=PATH, io/ journals before each disk operation what a power cut could take back
 * (the old bytes under a write, creations, renames and removals with a hard link of what they
 * removed) and after each successful fdatasync or folder fsync what became durable. After the
 * process is killed, io_powercut_apply reads the journal and plays a seeded power cut: every
 * write not made durable is kept whole, torn at 512-byte sector boundaries or lost, and every
 * creation, rename or removal not made durable by an fsync of its folder is undone. io/powercut.c
 * documents the journal's layout and the rules. Test-only: nothing in cstore's normal paths
 * touches it. */
#ifndef CS_IO_POWERCUT_H
#define CS_IO_POWERCUT_H

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

struct io_powercut;

#define IO_CUT_SECTOR_BYTES 512u /* a torn write keeps or loses whole sectors of this size */

/* Flags of io_powercut_write. */
#define IO_CUT_RING                                                                                \
    1u                  /* submitted to io_uring: it has happened only once io_powercut_completed  \
                         */
#define IO_CUT_DSYNC 2u /* RWF_DSYNC: its own range is durable once completed */

/* Start the journal at path (created or truncated). Returns 0, -ENOMEM or -errno. */
CS_MUST_CHECK int io_powercut_open(const char *path, struct io_powercut **out);
/* Close the journal (it stays on disk for io_powercut_apply). p may be NULL. */
void io_powercut_close(struct io_powercut *p);

/* Recording: called by io/ in the process under test, from any thread. A journal that cannot be
 * written makes the simulation meaningless: the process aborts with a message. */

/* Before a write of len bytes at off through fd: journal the bytes it will replace. Returns the
 * record's sequence number (0 when nothing was journaled: a file already removed). */
uint64_t io_powercut_write(struct io_powercut *p, int fd, uint64_t off, uint64_t len,
                           unsigned flags);
/* A ring write (IO_CUT_RING) journaled as seq completed successfully. */
void io_powercut_completed(struct io_powercut *p, uint64_t seq);
/* Take a mark just before an fdatasync or a folder fsync is started; the sync, once it
 * succeeded, covers the operations journaled before the mark. */
uint64_t io_powercut_mark(struct io_powercut *p);
/* The inode number of open file fd, to name it in io_powercut_synced (take it while fd is
 * known to be that file: a ring fdatasync may complete after its descriptor was closed). */
uint64_t io_powercut_ino(int fd);
/* An fdatasync of the file with inode ino, started at mark, succeeded: writes of that file
 * journaled (ring writes: completed) before mark are durable. */
void io_powercut_synced(struct io_powercut *p, uint64_t ino, uint64_t mark);
/* An fsync of folder dir started at mark succeeded: creations, renames and removals in it
 * journaled before mark are durable. */
void io_powercut_dir_synced(struct io_powercut *p, const char *dir, uint64_t mark);
/* After path (a file or a folder) was created (it did not exist before). */
void io_powercut_created(struct io_powercut *p, const char *path);
/* Before rename(from, to) (a file that to replaces is kept as a hard link). */
void io_powercut_renaming(struct io_powercut *p, const char *from, const char *to);
/* Before unlink(path) (the file is kept as a hard link). */
void io_powercut_unlinking(struct io_powercut *p, const char *path);

/* What io_powercut_apply did. */
struct io_powercut_report {
    uint64_t records;        /* journal records read */
    uint64_t writes_durable; /* writes left alone: made durable */
    uint64_t writes_kept;    /* writes not durable, kept whole */
    uint64_t writes_torn;    /* writes not durable, torn at sector boundaries */
    uint64_t writes_lost;    /* writes not durable, lost whole */
    uint64_t meta_durable;   /* creations, renames, removals left alone: folder synced */
    uint64_t meta_undone;    /* creations, renames, removals undone */
    uint64_t skipped;        /* records about files that are gone (or could not be undone) */
    uint64_t truncated;      /* files cut back to their size before lost writes */
};

/* Play a power cut on the files the journal at path describes, as it was when the process that
 * wrote it died: each write not durable is kept whole, torn at IO_CUT_SECTOR_BYTES boundaries or
 * lost (a pure function of seed and the record), newest to oldest, restoring old bytes except
 * where a durable or kept later write covers them; creations, renames and removals whose folder
 * was not synced afterwards are undone. A durable write is never changed. The hard links the
 * journal kept are removed; the journal itself is left. Must not run while the journal's writer
 * is alive. rep may be NULL. Returns 0, CS_ECORRUPT when the journal does not start with a valid
 * header, -ENOMEM or -errno (the files are then partly cut). */
CS_MUST_CHECK int io_powercut_apply(const char *path, uint64_t seed,
                                    struct io_powercut_report *rep);

#endif
