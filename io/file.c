/* File and folder operations.
 *
 * Rules kept here: every creation, rename or removal is made durable by an fsync of its folder
 * (io_file_publish and io_file_replace do it; callers that create, rename or remove files call
 * io_dir_sync); reads and writes loop until the whole range is done or fail with -errno; a file
 * that is shorter than what its reader needs is CS_ECORRUPT, never an assert. Each operation
 * first asks the fault plan (when there is one) whether to fail, so that tests can fail any disk
 * operation cstore makes; nothing else in cstore calls these system calls on data files. With a
 * power-cut journal in the plan (io/powercut.c), each operation that changes the disk is
 * journaled before it (old bytes, kept links) and each successful sync after it. */
#include "file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cstore.h"
#include "fault.h"
#include "powercut.h"

#define IO_RETRY_MAX 1000              /* EINTR / partial-progress iterations before giving up */
#define IO_EXTENTS_BATCH 32u           /* FIEMAP extents asked for per ioctl */
#define IO_EXTENT_CALLS_MAX (1u << 24) /* ioctls / lseeks one io_file_written may make */

static int fault_op(struct io_fault *f, enum io_op op)
{
    return cs_unlikely(f != NULL) ? io_fault_on_op(f, op) : 0;
}

/* The plan's power-cut journal, or NULL. */
static struct io_powercut *cut_of(struct io_fault *f)
{
    return cs_unlikely(f != NULL) ? io_fault_powercut(f) : NULL;
}

/* The folder that holds path ("." for a bare name). */
static int parent_of(const char *path, char *parent, size_t size)
{
    if (snprintf(parent, size, "%s", path) >= (int)size)
        return -ENAMETOOLONG;
    char *slash = strrchr(parent, '/');
    if (slash == parent)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(parent, size, ".");
    return 0;
}

int io_dir_ensure(struct io_fault *f, const char *dir)
{
    struct stat st;
    if (stat(dir, &st) == 0)
        return S_ISDIR(st.st_mode) ? 0 : CS_ENOTDIR;
    if (errno != ENOENT)
        return errno == ENOTDIR ? CS_ENOTDIR : -errno;
    int rc = fault_op(f, IO_OP_CREATE);
    if (rc)
        return rc;
    if (mkdir(dir, 0755) != 0)
        return errno == ENOTDIR ? CS_ENOTDIR : -errno;
    if (cut_of(f))
        io_powercut_created(cut_of(f), dir);
    char parent[PATH_MAX];
    rc = parent_of(dir, parent, sizeof(parent));
    return rc ? rc : io_dir_sync(f, parent);
}

int io_dir_sync(struct io_fault *f, const char *dir)
{
    int rc = fault_op(f, IO_OP_DIR_SYNC);
    if (rc)
        return rc;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct io_powercut *cut = cut_of(f);
    uint64_t mark = cut ? io_powercut_mark(cut) : 0;
    rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    if (cut && !rc)
        io_powercut_dir_synced(cut, dir, mark);
    return rc;
}

int io_dir_lock(const char *dir, bool readonly, int *fd)
{
    char path[PATH_MAX];
    *fd = -1;
    if (snprintf(path, sizeof(path), "%s/LOCK", dir) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    int f = open(path, readonly ? O_RDONLY | O_CLOEXEC : O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0 && readonly)
        return 0; /* nothing to lock on a read-only copy: nobody can write it */
    if (f < 0)
        return -errno;
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(f);
        return e == EWOULDBLOCK ? CS_ELOCKED : -e;
    }
    *fd = f;
    return 0;
}

int io_dir_list(struct io_fault *f, const char *dir, io_dir_fn fn, void *arg)
{
    int rc = fault_op(f, IO_OP_LIST);
    if (rc)
        return rc;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOTDIR ? CS_ENOTDIR : -errno;
    struct dirent *e;
    uint32_t n = 0;
    errno = 0;
    while (!rc && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (++n > IO_DIR_ENTRIES_MAX) {
            rc = CS_EFULL;
            break;
        }
        rc = fn(arg, e->d_name);
        errno = 0;
    }
    if (!rc && errno)
        rc = -errno; /* readdir failed */
    closedir(d);
    return rc;
}

int io_file_open(struct io_fault *f, const char *path, int flags, int *fd)
{
    int rc = (flags & O_CREAT) ? fault_op(f, IO_OP_CREATE) : 0;
    if (rc)
        return rc;
    struct io_powercut *cut = (flags & O_CREAT) ? cut_of(f) : NULL;
    struct stat st;
    bool existed = cut && lstat(path, &st) == 0;
    if (existed && (flags & O_TRUNC) && st.st_size > 0) {
        /* A truncation is not journaled: start from a fresh file, whose creation is. */
        if (unlink(path) != 0)
            return -errno;
        existed = false;
    }
    int h = open(path, flags | O_CLOEXEC, 0644);
    if (h < 0)
        return -errno;
    if (cut && !existed)
        io_powercut_created(cut, path);
    *fd = h;
    return 0;
}

void io_file_close(int fd)
{
    if (fd >= 0)
        close(fd);
}

int io_file_read_at(struct io_fault *f, int fd, void *buf, size_t len, uint64_t off, size_t *got)
{
    int rc = fault_op(f, IO_OP_READ);
    if (rc)
        return rc;
    char *p = buf;
    size_t done = 0;
    for (int i = 0; done < len && i < IO_RETRY_MAX; i++) {
        ssize_t n = pread(fd, p + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    *got = done;
    return 0;
}

int io_file_pread(struct io_fault *f, int fd, void *buf, size_t len, uint64_t off)
{
    size_t got = 0;
    int rc = io_file_read_at(f, fd, buf, len, off, &got);
    return rc ? rc : (got == len ? 0 : CS_ECORRUPT);
}

int io_file_pwrite(struct io_fault *f, int fd, const void *buf, size_t len, uint64_t off)
{
    int rc = fault_op(f, IO_OP_WRITE);
    if (rc)
        return rc;
    if (cut_of(f))
        (void)io_powercut_write(cut_of(f), fd, off, len, 0);
    const char *p = buf;
    for (int i = 0; len > 0 && i < IO_RETRY_MAX; i++) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return len == 0 ? 0 : -EIO;
}

int io_file_sync(struct io_fault *f, int fd)
{
    int rc = fault_op(f, IO_OP_SYNC);
    if (rc)
        return rc;
    struct io_powercut *cut = cut_of(f);
    uint64_t mark = cut ? io_powercut_mark(cut) : 0;
    rc = fdatasync(fd) == 0 ? 0 : -errno;
    if (cut && !rc)
        io_powercut_synced(cut, io_powercut_ino(fd), mark);
    return rc;
}

int io_file_size(int fd, uint64_t *size)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    *size = (uint64_t)st.st_size;
    return 0;
}

int io_file_preallocate(struct io_fault *f, int fd, uint64_t len)
{
    if (f && io_fault_on_allocate(f))
        return -ENOSPC;
    int rc = posix_fallocate(fd, 0, (off_t)len);
    if (rc == EOPNOTSUPP || rc == EINVAL)
        return ftruncate(fd, (off_t)len) == 0 ? 0 : -errno; /* filesystems without fallocate */
    return -rc;
}

void io_file_release(int fd, uint64_t off, uint64_t len)
{
    if (len)
        (void)fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len);
}

int io_file_direct(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -errno;
    return fcntl(fd, F_SETFL, flags | O_DIRECT) == 0 ? 0 : -errno;
}

int io_file_zero(struct io_fault *f, int fd, uint64_t off, uint64_t len)
{
    static const char zeros[65536];
    if (len == 0)
        return 0;
    int rc = fault_op(f, IO_OP_WRITE);
    if (rc)
        return rc;
    if (cut_of(f))
        (void)io_powercut_write(cut_of(f), fd, off, len, 0);
    if (fallocate(fd, FALLOC_FL_ZERO_RANGE, (off_t)off, (off_t)len) == 0)
        return 0;
    for (uint64_t done = 0; done < len;) {
        size_t n = (size_t)cs_min_u64(sizeof(zeros), len - done);
        rc = io_file_pwrite(NULL, fd, zeros, n, off + done);
        if (rc)
            return rc;
        done += n;
    }
    return 0;
}

int io_file_rename(struct io_fault *f, const char *from, const char *to)
{
    int rc = fault_op(f, IO_OP_RENAME);
    if (rc)
        return rc;
    if (cut_of(f))
        io_powercut_renaming(cut_of(f), from, to);
    return rename(from, to) == 0 ? 0 : -errno;
}

int io_file_unlink(struct io_fault *f, const char *path)
{
    int rc = fault_op(f, IO_OP_UNLINK);
    if (rc)
        return rc;
    if (cut_of(f))
        io_powercut_unlinking(cut_of(f), path);
    return unlink(path) == 0 ? 0 : -errno;
}

void io_file_discard(struct io_fault *f, const char *path)
{
    if (io_file_unlink(f, path) != 0)
        return; /* removed at the next open of the folder */
}

int io_file_publish(struct io_fault *f, const char *dir, const char *tmp_name, const char *name)
{
    char tmp[PATH_MAX], dst[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s/%s", dir, tmp_name) >= (int)sizeof(tmp) ||
        snprintf(dst, sizeof(dst), "%s/%s", dir, name) >= (int)sizeof(dst))
        return -ENAMETOOLONG;
    int rc = io_file_rename(f, tmp, dst);
    return rc ? rc : io_dir_sync(f, dir);
}

int io_file_replace(struct io_fault *f, const char *dir, const char *name, const void *buf,
                    size_t len)
{
    char tmp_name[NAME_MAX + 1], tmp[PATH_MAX];
    if (snprintf(tmp_name, sizeof(tmp_name), "%s.tmp", name) >= (int)sizeof(tmp_name) ||
        snprintf(tmp, sizeof(tmp), "%s/%s", dir, tmp_name) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = -1;
    int rc = io_file_open(f, tmp, O_WRONLY | O_CREAT | O_TRUNC, &fd);
    if (rc)
        return rc;
    rc = io_file_pwrite(f, fd, buf, len, 0);
    if (!rc)
        rc = io_file_sync(f, fd);
    io_file_close(fd);
    if (!rc)
        rc = io_file_publish(f, dir, tmp_name, name);
    if (rc)
        io_file_discard(f, tmp);
    return rc;
}

int io_file_read_all(struct io_fault *f, const char *path, size_t max, void **buf, size_t *len)
{
    int fd = -1;
    int rc = io_file_open(f, path, O_RDONLY, &fd);
    if (rc)
        return rc;
    uint64_t size;
    rc = io_file_size(fd, &size);
    if (!rc && (size > max || size == 0))
        rc = CS_ECORRUPT;
    void *p = NULL;
    if (!rc) {
        p = cs_mem_alloc(0, (size_t)size);
        rc = p ? io_file_pread(f, fd, p, (size_t)size, 0) : -ENOMEM;
    }
    io_file_close(fd);
    if (rc) {
        cs_mem_free(p);
        return rc;
    }
    *buf = p;
    *len = (size_t)size;
    return 0;
}

/* io_file_written through FIEMAP. FIEMAP_FLAG_SYNC first writes back dirty pages, so that data
 * still in the page cache (a buffered write over preallocated space) shows as written. Sets
 * *unsupported when FIEMAP is not available here (the caller falls back). */
static int written_fiemap(int fd, uint64_t from, uint64_t to, io_extent_fn fn, void *arg,
                          bool *unsupported)
{
    union {
        struct fiemap fm;
        char bytes[sizeof(struct fiemap) + IO_EXTENTS_BATCH * sizeof(struct fiemap_extent)];
    } u;
    uint64_t start = from;
    for (uint32_t calls = 0; start < to && calls < IO_EXTENT_CALLS_MAX; calls++) {
        memset(&u, 0, sizeof(u));
        u.fm.fm_start = start;
        u.fm.fm_length = to - start;
        u.fm.fm_flags = FIEMAP_FLAG_SYNC;
        u.fm.fm_extent_count = IO_EXTENTS_BATCH;
        if (ioctl(fd, FS_IOC_FIEMAP, &u.fm) != 0) {
            *unsupported = calls == 0;
            return calls == 0 ? 0 : -errno;
        }
        if (u.fm.fm_mapped_extents == 0)
            return 0;
        for (uint32_t i = 0; i < u.fm.fm_mapped_extents; i++) {
            const struct fiemap_extent *e = &u.fm.fm_extents[i];
            uint64_t end = e->fe_logical + e->fe_length;
            if (!(e->fe_flags & FIEMAP_EXTENT_UNWRITTEN) && end > start && e->fe_logical < to) {
                uint64_t lo = e->fe_logical > start ? e->fe_logical : start;
                uint64_t hi = end < to ? end : to;
                int rc = fn(arg, lo, hi - lo);
                if (rc)
                    return rc;
            }
            if ((e->fe_flags & FIEMAP_EXTENT_LAST) || end <= start)
                return 0;
            start = end;
        }
    }
    return 0;
}

/* io_file_written through SEEK_DATA / SEEK_HOLE. */
static int written_seek(int fd, uint64_t from, uint64_t to, io_extent_fn fn, void *arg)
{
    uint64_t pos = from;
    for (uint32_t calls = 0; pos < to && calls < IO_EXTENT_CALLS_MAX; calls++) {
        off_t data = lseek(fd, (off_t)pos, SEEK_DATA);
        if (data < 0)
            return errno == ENXIO ? 0 : fn(arg, pos, to - pos);
        if ((uint64_t)data >= to)
            return 0;
        off_t hole = lseek(fd, data, SEEK_HOLE);
        uint64_t end = hole < 0 || (uint64_t)hole > to ? to : (uint64_t)hole;
        int rc = fn(arg, (uint64_t)data, end - (uint64_t)data);
        if (rc)
            return rc;
        pos = end;
    }
    return 0;
}

int io_file_written(struct io_fault *f, int fd, uint64_t from, uint64_t to, io_extent_fn fn,
                    void *arg)
{
    if (from >= to)
        return 0;
    int rc = fault_op(f, IO_OP_LIST);
    if (rc)
        return rc;
    bool unsupported = false;
    rc = written_fiemap(fd, from, to, fn, arg, &unsupported);
    return unsupported ? written_seek(fd, from, to, fn, arg) : rc;
}

/* ---- Online backup ---- */

int io_file_link(struct io_fault *f, const char *src, const char *dst)
{
    int rc = fault_op(f, IO_OP_CREATE);
    if (rc)
        return rc;
    return link(src, dst) == 0 ? 0 : -errno;
}

bool io_link_unsupported(int rc)
{
    return rc == -EXDEV || rc == -EPERM || rc == -EMLINK || rc == -EOPNOTSUPP || rc == -ENOSYS;
}

/* Copy [0, len) of in to out: copy_file_range (which may share the blocks, on filesystems that
 * can), else read and write through a buffer. */
static int copy_range(struct io_fault *f, int in, int out, uint64_t len)
{
    uint64_t done = 0;
    bool plain = false;
    for (int stalls = 0; done < len && stalls < IO_RETRY_MAX;) {
        size_t n = (size_t)cs_min_u64(len - done, 1u << 30);
        loff_t in_off = (loff_t)done, out_off = (loff_t)done;
        ssize_t got = copy_file_range(in, &in_off, out, &out_off, n, 0);
        if (got < 0 && errno == EINTR) {
            stalls++;
            continue;
        }
        if (got < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                        errno == EOPNOTSUPP || errno == EBADF)) {
            plain = true;
            break;
        }
        if (got < 0)
            return -errno;
        if (got == 0)
            return CS_ECORRUPT; /* the source is shorter than it should be */
        done += (uint64_t)got;
    }
    if (!plain)
        return done == len ? 0 : -EIO;
    size_t buf_bytes = 1u << 20;
    char *buf = malloc(buf_bytes);
    if (!buf)
        return -ENOMEM;
    int rc = 0;
    while (done < len && !rc) {
        size_t n = (size_t)cs_min_u64(len - done, buf_bytes);
        rc = io_file_pread(f, in, buf, n, done);
        if (!rc)
            rc = io_file_pwrite(f, out, buf, n, done);
        done += n;
    }
    free(buf);
    return rc;
}

int io_file_copy(struct io_fault *f, int src_fd, const char *dst, uint64_t copy_bytes,
                 uint64_t file_bytes)
{
    cs_assert(copy_bytes <= file_bytes);
    int fd = -1;
    int rc = io_file_open(f, dst, O_WRONLY | O_CREAT | O_EXCL, &fd);
    if (rc)
        return rc;
    rc = copy_range(f, src_fd, fd, copy_bytes);
    if (!rc && ftruncate(fd, (off_t)file_bytes) != 0)
        rc = -errno;
    if (!rc)
        rc = io_file_sync(f, fd); /* data and size: what reading the copy needs */
    io_file_close(fd);
    if (rc)
        io_file_discard(f, dst);
    return rc;
}

int io_dir_remove(struct io_fault *f, const char *dir)
{
    int rc = fault_op(f, IO_OP_UNLINK);
    if (rc)
        return rc;
    return rmdir(dir) == 0 ? 0 : -errno;
}
