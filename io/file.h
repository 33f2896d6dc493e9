/* File and folder operations of cstore: every open, read, write, fsync, rename and lock of a data
 * file goes through here (so that the fault-injecting backend can stand in front of them). */
#ifndef CS_IO_FILE_H
#define CS_IO_FILE_H

#include <stdbool.h>
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

/* ---- Online backup (engine/backup.c, "backup" in shards/shard.c) ---- */

/* Called by io_dir_each with each entry's name; a non-zero return stops the walk. */
typedef int (*io_dir_fn)(void *arg, const char *name);
/* Call fn for every entry of dir but "." and "..", in no particular order; returns fn's first
 * non-zero result, or 0. -ENOENT when dir is missing, CS_ENOTDIR when it is not a folder. fn may
 * remove the entry it was given. */
CS_MUST_CHECK int io_dir_each(const char *dir, io_dir_fn fn, void *arg);
/* Make dst a hard link to src (dst must not exist: -EEXIST). The caller syncs dst's folder.
 * Where the filesystem cannot link, io_link_unsupported() is true of the result. */
CS_MUST_CHECK int io_file_link(const char *src, const char *dst);
/* rc is io_file_link's answer for "no hard link here" (another filesystem, or one without hard
 * links, or too many links): the caller copies instead. */
bool io_link_unsupported(int rc);
/* Create dst (it must not exist: -EEXIST), copy bytes [0, copy_bytes) of src_fd into it, size it
 * to file_bytes (>= copy_bytes; the rest reads as zeros, a hole where the filesystem allows) and
 * fsync it. CS_ECORRUPT when src_fd ends before copy_bytes. On failure dst is removed. */
CS_MUST_CHECK int io_file_copy(int src_fd, const char *dst, uint64_t copy_bytes,
                               uint64_t file_bytes);
/* Remove a file (unlink), or an empty folder (rmdir). The caller syncs the parent folder. */
CS_MUST_CHECK int io_file_remove(const char *path);
CS_MUST_CHECK int io_dir_remove(const char *dir);

#endif
