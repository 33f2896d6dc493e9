/* File and folder operations.
 *
 * Rules kept here: every creation, rename or removal is followed by an fsync of the folder
 * (io_file_replace does it; callers that create files call io_dir_sync); reads and writes loop
 * until the whole range is done or fail with -errno; a file that is shorter than what its
 * reader needs is CS_ECORRUPT, never an assert. */
#include "file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cstore.h"

#define IO_RETRY_MAX 1000 /* EINTR / partial-progress iterations before giving up */

int io_dir_ensure(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) == 0)
        return S_ISDIR(st.st_mode) ? 0 : CS_ENOTDIR;
    if (errno != ENOENT)
        return errno == ENOTDIR ? CS_ENOTDIR : -errno;
    if (mkdir(dir, 0755) != 0)
        return errno == ENOTDIR ? CS_ENOTDIR : -errno;
    /* make the new folder's entry durable in its parent */
    char parent[PATH_MAX];
    if (snprintf(parent, sizeof(parent), "%s", dir) >= (int)sizeof(parent))
        return -ENAMETOOLONG;
    char *slash = strrchr(parent, '/');
    if (slash == parent)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(parent, sizeof(parent), ".");
    return io_dir_sync(parent);
}

int io_dir_sync(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

int io_dir_lock(const char *dir, int *fd)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/LOCK", dir) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
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

int io_file_open(const char *path, int flags, int *fd)
{
    int f = open(path, flags | O_CLOEXEC, 0644);
    if (f < 0)
        return -errno;
    *fd = f;
    return 0;
}

void io_file_close(int fd)
{
    if (fd >= 0)
        close(fd);
}

int io_file_pread(int fd, void *buf, size_t len, uint64_t off)
{
    char *p = buf;
    for (int i = 0; len > 0 && i < IO_RETRY_MAX; i++) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return CS_ECORRUPT;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return len == 0 ? 0 : -EIO;
}

int io_file_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
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

int io_file_sync(int fd)
{
    return fdatasync(fd) == 0 ? 0 : -errno;
}

int io_file_size(int fd, uint64_t *size)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    *size = (uint64_t)st.st_size;
    return 0;
}

int io_file_preallocate(int fd, uint64_t len)
{
    int rc = posix_fallocate(fd, 0, (off_t)len);
    if (rc == EOPNOTSUPP || rc == EINVAL)
        return ftruncate(fd, (off_t)len) == 0 ? 0 : -errno; /* filesystems without fallocate */
    return -rc;
}

int io_file_direct(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -errno;
    return fcntl(fd, F_SETFL, flags | O_DIRECT) == 0 ? 0 : -errno;
}

int io_file_zero(int fd, uint64_t off, uint64_t len)
{
    static const char zeros[65536];
    if (len == 0)
        return 0;
    if (fallocate(fd, FALLOC_FL_ZERO_RANGE, (off_t)off, (off_t)len) == 0)
        return 0;
    for (uint64_t done = 0; done < len;) {
        size_t n = (size_t)cs_min_u64(sizeof(zeros), len - done);
        int rc = io_file_pwrite(fd, zeros, n, off + done);
        if (rc)
            return rc;
        done += n;
    }
    return 0;
}

int io_file_replace(const char *dir, const char *name, const void *buf, size_t len)
{
    char tmp[PATH_MAX], dst[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s/%s.tmp", dir, name) >= (int)sizeof(tmp) ||
        snprintf(dst, sizeof(dst), "%s/%s", dir, name) >= (int)sizeof(dst))
        return -ENAMETOOLONG;
    int fd = -1;
    int rc = io_file_open(tmp, O_WRONLY | O_CREAT | O_TRUNC, &fd);
    if (rc)
        return rc;
    rc = io_file_pwrite(fd, buf, len, 0);
    if (!rc)
        rc = fsync(fd) == 0 ? 0 : -errno;
    io_file_close(fd);
    if (!rc)
        rc = rename(tmp, dst) == 0 ? 0 : -errno;
    if (!rc)
        rc = io_dir_sync(dir);
    if (rc)
        unlink(tmp);
    return rc;
}

int io_file_read_all(const char *path, size_t max, void **buf, size_t *len)
{
    int fd = -1;
    int rc = io_file_open(path, O_RDONLY, &fd);
    if (rc)
        return rc;
    uint64_t size;
    rc = io_file_size(fd, &size);
    if (!rc && (size > max || size == 0))
        rc = CS_ECORRUPT;
    void *p = NULL;
    if (!rc) {
        p = cs_mem_alloc(0, (size_t)size);
        rc = p ? io_file_pread(fd, p, (size_t)size, 0) : -ENOMEM;
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

/* ---- Online backup ---- */

int io_dir_each(const char *dir, io_dir_fn fn, void *arg)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOTDIR ? CS_ENOTDIR : -errno;
    int rc = 0;
    /* no bound of its own: a folder's entries are finite and each is visited once */
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            rc = errno ? -errno : 0;
            break;
        }
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        rc = fn(arg, e->d_name);
        if (rc)
            break;
    }
    closedir(d);
    return rc;
}

int io_file_link(const char *src, const char *dst)
{
    return link(src, dst) == 0 ? 0 : -errno;
}

bool io_link_unsupported(int rc)
{
    return rc == -EXDEV || rc == -EPERM || rc == -EMLINK || rc == -EOPNOTSUPP || rc == -ENOSYS;
}

/* Copy [0, len) of in to out: copy_file_range (which may share the blocks, on filesystems that
 * can), else read and write through a buffer. */
static int copy_range(int in, int out, uint64_t len)
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
        rc = io_file_pread(in, buf, n, done);
        if (!rc)
            rc = io_file_pwrite(out, buf, n, done);
        done += n;
    }
    free(buf);
    return rc;
}

int io_file_copy(int src_fd, const char *dst, uint64_t copy_bytes, uint64_t file_bytes)
{
    cs_assert(copy_bytes <= file_bytes);
    int fd = -1;
    int rc = io_file_open(dst, O_WRONLY | O_CREAT | O_EXCL, &fd);
    if (rc)
        return rc;
    rc = copy_range(src_fd, fd, copy_bytes);
    if (!rc && ftruncate(fd, (off_t)file_bytes) != 0)
        rc = -errno;
    if (!rc && fsync(fd) != 0)
        rc = -errno;
    io_file_close(fd);
    if (rc)
        unlink(dst);
    return rc;
}

int io_file_remove(const char *path)
{
    return unlink(path) == 0 ? 0 : -errno;
}

int io_dir_remove(const char *dir)
{
    return rmdir(dir) == 0 ? 0 : -errno;
}
