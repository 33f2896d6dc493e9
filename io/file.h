/* File and folder operations of cstore: every open, read, write, fsync, rename and lock of a data
 * file goes through here (so that the fault-injecting backend can stand in front of them). */
#ifndef CS_IO_FILE_H
#define CS_IO_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util.h"

/* Create dir if missing (not its parents). CS_ENOTDIR if path exists and is not a folder. */
CS_MUST_CHECK int io_dir_ensure(const char *dir);
/* fsync a folder, making creations, renames and removals in it durable. */
CS_MUST_CHECK int io_dir_sync(const char *dir);
/* Take an exclusive advisory lock on dir/LOCK; *fd receives the descriptor that holds it.
 * CS_ELOCKED when another open file description holds it. */
CS_MUST_CHECK int io_dir_lock(const char *dir, int *fd);

CS_MUST_CHECK int io_file_open(const char *path, int flags, int *fd);
void io_file_close(int fd);
/* Read exactly len bytes at off; a short file is CS_ECORRUPT. */
CS_MUST_CHECK int io_file_pread(int fd, void *buf, size_t len, uint64_t off);
/* Write exactly len bytes at off (retrying short writes that made progress). */
CS_MUST_CHECK int io_file_pwrite(int fd, const void *buf, size_t len, uint64_t off);
CS_MUST_CHECK int io_file_sync(int fd);
CS_MUST_CHECK int io_file_size(int fd, uint64_t *size);
/* Reserve len bytes of disk for fd (fallocate), so later writes need no allocation. */
CS_MUST_CHECK int io_file_preallocate(int fd, uint64_t len);
/* Switch fd to direct I/O (O_DIRECT): later reads and writes bypass the page cache and must be
 * aligned. -EINVAL (or another -errno) when the filesystem does not support it; fd is then
 * unchanged. */
CS_MUST_CHECK int io_file_direct(int fd);
/* Turn [off, off+len) into zeros (used to cut a torn WAL tail). */
CS_MUST_CHECK int io_file_zero(int fd, uint64_t off, uint64_t len);
/* Write buf to dir/name atomically: write dir/name.tmp, fsync, rename, fsync dir. */
CS_MUST_CHECK int io_file_replace(const char *dir, const char *name, const void *buf, size_t len);
/* Read a whole small file into a cs_mem buffer (at most max bytes, else CS_ECORRUPT). */
CS_MUST_CHECK int io_file_read_all(const char *path, size_t max, void **buf, size_t *len);

#endif
