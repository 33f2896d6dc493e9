/* File and folder operations of cstore: every open, read, write, sync, rename, removal, folder
 * listing and extent query of a data file goes through here, so that the fault-injecting backend
 * (io/fault.c) can stand in front of every one of them. Each call takes the database's fault plan
 * (NULL: no faults, the plain system call). */
#ifndef CS_IO_FILE_H
#define CS_IO_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util.h"

struct io_fault;

#define IO_DIR_ENTRIES_MAX 1000000u /* entries io_dir_list visits in one folder */

/* Create dir if missing (not its parents), and make its entry durable in its parent. CS_ENOTDIR
 * if path exists and is not a folder. */
CS_MUST_CHECK int io_dir_ensure(struct io_fault *f, const char *dir);
/* fsync a folder, making creations, renames and removals in it durable. */
CS_MUST_CHECK int io_dir_sync(struct io_fault *f, const char *dir);
/* Take an exclusive advisory lock on dir/LOCK (created if missing); *fd receives the descriptor
 * that holds it. CS_ELOCKED when another open file description holds it. With readonly, nothing
 * is created: a LOCK file that is missing or cannot be opened (a read-only copy) leaves *fd at
 * -1 and returns 0. */
CS_MUST_CHECK int io_dir_lock(const char *dir, bool readonly, int *fd);
/* Call fn(arg, name) for every entry of dir but "." and ".." (in no particular order); a non-zero
 * return of fn stops the walk and is returned; fn may remove the entry it was given. More than
 * IO_DIR_ENTRIES_MAX entries: CS_EFULL; -ENOENT when dir is missing, CS_ENOTDIR when it is not a
 * folder. */
typedef int (*io_dir_fn)(void *arg, const char *name);
CS_MUST_CHECK int io_dir_list(struct io_fault *f, const char *dir, io_dir_fn fn, void *arg);

/* open(2) with O_CLOEXEC; flags as for open. A creation (O_CREAT) is durable only once the
 * folder is synced (io_dir_sync). */
CS_MUST_CHECK int io_file_open(struct io_fault *f, const char *path, int flags, int *fd);
void io_file_close(int fd);
/* Read exactly len bytes at off; a file that ends before is CS_ECORRUPT. */
CS_MUST_CHECK int io_file_pread(struct io_fault *f, int fd, void *buf, size_t len, uint64_t off);
/* Read up to len bytes at off; *got receives the count (less than len only at the end of the
 * file). */
CS_MUST_CHECK int io_file_read_at(struct io_fault *f, int fd, void *buf, size_t len, uint64_t off,
                                  size_t *got);
/* Write exactly len bytes at off (retrying short writes that made progress). */
CS_MUST_CHECK int io_file_pwrite(struct io_fault *f, int fd, const void *buf, size_t len,
                                 uint64_t off);
/* fdatasync: the file's data (and the metadata needed to read it) is durable. */
CS_MUST_CHECK int io_file_sync(struct io_fault *f, int fd);
CS_MUST_CHECK int io_file_size(int fd, uint64_t *size);
/* Give back the disk blocks of [off, off + len) of fd, which then reads as zeros; the size stays
 * (fallocate PUNCH_HOLE). Best effort: where the filesystem cannot, nothing happens. Not
 * journaled for power cuts: only for bytes nothing will read. */
void io_file_release(int fd, uint64_t off, uint64_t len);
/* Reserve len bytes of disk for fd (fallocate), so later writes need no allocation. */
CS_MUST_CHECK int io_file_preallocate(struct io_fault *f, int fd, uint64_t len);
/* Switch fd to direct I/O (O_DIRECT): later reads and writes bypass the page cache and must be
 * aligned. -EINVAL (or another -errno) when the filesystem does not support it; fd is then
 * unchanged. */
CS_MUST_CHECK int io_file_direct(int fd);
/* Turn [off, off+len) into zeros (used to cut a torn WAL tail); not synced. */
CS_MUST_CHECK int io_file_zero(struct io_fault *f, int fd, uint64_t off, uint64_t len);
/* rename(2); durable once the folder is synced. */
CS_MUST_CHECK int io_file_rename(struct io_fault *f, const char *from, const char *to);
/* unlink(2); durable once the folder is synced. A missing file is -ENOENT. */
CS_MUST_CHECK int io_file_unlink(struct io_fault *f, const char *path);
/* Best-effort removal of a temporary file that a failed step leaves (a leftover is removed by the
 * next open of its folder); errors are ignored. */
void io_file_discard(struct io_fault *f, const char *path);
/* Publish a written and synced file: rename dir/tmp_name to dir/name, then fsync dir. */
CS_MUST_CHECK int io_file_publish(struct io_fault *f, const char *dir, const char *tmp_name,
                                  const char *name);
/* Write buf to dir/name atomically: write dir/name.tmp, fsync, rename, fsync dir. */
CS_MUST_CHECK int io_file_replace(struct io_fault *f, const char *dir, const char *name,
                                  const void *buf, size_t len);
/* Read a whole small file into a cs_mem buffer (at most max bytes, else CS_ECORRUPT). */
CS_MUST_CHECK int io_file_read_all(struct io_fault *f, const char *path, size_t max, void **buf,
                                   size_t *len);
/* Call fn(arg, off, len) for each range of [from, to) that may hold written data, in order: the
 * parts of the file that were never written (holes, and preallocated extents not yet written)
 * are left out when the filesystem can tell (FIEMAP, else SEEK_DATA / SEEK_HOLE); otherwise the
 * whole range is one call. A non-zero return of fn stops the walk and is returned. */
typedef int (*io_extent_fn)(void *arg, uint64_t off, uint64_t len);
CS_MUST_CHECK int io_file_written(struct io_fault *f, int fd, uint64_t from, uint64_t to,
                                  io_extent_fn fn, void *arg);

/* ---- Online backup (engine/backup.c, shards/shard_ckpt.c) ---- */

/* Make dst a hard link to src (dst must not exist: -EEXIST). The caller syncs dst's folder.
 * Where the filesystem cannot link, io_link_unsupported() is true of the result. */
CS_MUST_CHECK int io_file_link(struct io_fault *f, const char *src, const char *dst);
/* rc is io_file_link's answer for "no hard link here" (another filesystem, or one without hard
 * links, or too many links): the caller copies instead. */
bool io_link_unsupported(int rc);
/* Create dst (it must not exist: -EEXIST), copy bytes [0, copy_bytes) of src_fd into it, size it
 * to file_bytes (>= copy_bytes; the rest reads as zeros, a hole where the filesystem allows) and
 * fdatasync it. CS_ECORRUPT when src_fd ends before copy_bytes. On failure dst is removed. */
CS_MUST_CHECK int io_file_copy(struct io_fault *f, int src_fd, const char *dst, uint64_t copy_bytes,
                               uint64_t file_bytes);
/* Remove an empty folder (rmdir; files: io_file_unlink). The caller syncs the parent folder. */
CS_MUST_CHECK int io_dir_remove(struct io_fault *f, const char *dir);

#endif
