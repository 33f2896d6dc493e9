/* Power-cut simulation: the undo journal the process under test writes, and the cut a parent
 * plays from it after the process was killed (LazyFS-style, but without a FUSE layer: io/ is the
 * only door to cstore's files, so it can journal every operation itself).
 *
 * MODEL OF THE DISK. A write reaches the disk's cache at once (a SIGKILL loses nothing) but is
 * durable only after an fdatasync of its file that started after the write had completed, or,
 * written with RWF_DSYNC, once it completed (for its own range only). A creation, rename or
 * removal is durable once an fsync of its folder started after it. A power cut keeps any subset
 * of what is not durable: each such write is kept whole, torn (each 512-byte sector of it, at
 * absolute file offsets, kept or lost on its own) or lost; each metadata operation is kept or
 * undone (here: always undone, the harsher choice). Writes are judged independently, which
 * covers reordering (a later write kept while an earlier one is lost). Preallocations
 * (fallocate) are not journaled: they are treated as durable.
 *
 * JOURNAL FILE (append-only, written with one write(2) per record before the operation it
 * describes, so that a SIGKILL at any moment leaves at worst a partial last record, which the
 * reader ignores; the operation it announces had not started). All integers little-endian (the
 * host's: the journal never leaves the machine).
 *   header, 16 bytes:  0 8 magic "CSCUTJN1"   8 4 version (1)   12 4 zero
 *   record, 64-byte header then payload:
 *      0 4 magic 0x4a505343 ("CSPJ")
 *      4 2 kind (enum cut_kind)
 *      6 2 flags: IO_CUT_RING, IO_CUT_DSYNC, CUT_DIR (a created folder), CUT_KEEP (a hard link
 *              "<journal>.keep-<seq, 16 hex>" of the removed or replaced file exists)
 *      8 8 seq: record number, increasing from 1
 *     16 8 ino: the file's inode number (0 for DIRSYNC)
 *     24 8 a: WRITE offset; DONE the WRITE's seq; SYNC/DIRSYNC the mark; RENAME replaced inode
 *     32 8 b: WRITE length
 *     40 8 c: WRITE file size before it
 *     48 4 path bytes (absolute path: the file's when journaled; RENAME from; DIRSYNC the folder)
 *     52 4 path2 bytes (RENAME to)
 *     56 4 old bytes: for WRITE, the bytes [a, min(a+b, c)) held before the write
 *     60 4 check: FNV-1a 32 of bytes 0..59 and of the payload
 *     64 - path, path2, old bytes (no NULs, no padding)
 * Kinds: WRITE (before a write), DONE (a ring write completed), SYNC (an fdatasync started at
 * mark a succeeded), DIRSYNC (a folder fsync started at mark a succeeded), CREATE (after a
 * creation), RENAME (before a rename), UNLINK (before a removal).
 *
 * DURABILITY, as the cut judges it (records are read newest first). A WRITE of inode i is
 * durable when: it has IO_CUT_DSYNC and a DONE; or a later SYNC of i has mark > its seq (plain
 * writes) or > its DONE's seq (ring writes: an fdatasync does not cover a write still in flight).
 * A CREATE, RENAME or UNLINK in folder d is durable when a later DIRSYNC of d has mark > its seq.
 *
 * THE CUT (io_powercut_apply), newest record first, keeping per inode where the file is now, the
 * byte ranges that must keep their current bytes (durable or kept writes seen so far: newer than
 * the record at hand) and its size bounds:
 *   WRITE durable: its range is covered. Not durable: whole / torn / lost is drawn from (seed,
 *     seq); kept sectors are covered, lost ones get their old bytes back (zeros past the old
 *     size) wherever not covered. At the end a file is cut back to the largest of its old size
 *     before the oldest lost extending write and the end of its covered ranges.
 *   CREATE not durable: the file (or folder, with what it holds) is removed.
 *   RENAME not durable: moved back; the file it replaced is linked back from its hard link.
 *   UNLINK not durable: linked back from its hard link.
 * A record whose file is gone (or is another inode now) is skipped.
 *
 * SIZE. The writer keeps an index of its records (kind, inode, folder, whether settled: durable,
 * or about a file removed for good). Every CUT_COMPACT_AT records it drops the prefix of settled
 * records: a record is only ever consulted for records older than itself, so once nothing older
 * is unsettled, the prefix can go (the journal is rewritten as "<journal>.tmp" and renamed over,
 * and the prefix's hard links are removed). */
#include "powercut.h"
#include "file.h"

#include "cstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CUT_MAGIC "CSCUTJN1"
#define CUT_VERSION 1u
#define CUT_REC_MAGIC 0x4a505343u
#define CUT_HEADER_BYTES 16u
#define CUT_REC_BYTES 64u
#define CUT_DIR 4u                         /* flag: a created folder */
#define CUT_KEEP 8u                        /* flag: a hard link of the removed file was kept */
#define CUT_COMPACT_AT 4096u               /* index entries that trigger a compaction attempt */
#define CUT_WRITE_BYTES_MAX (256u << 20)   /* longest write journaled */
#define CUT_IO_RETRY_MAX 1000              /* EINTR / partial-progress iterations */
#define CUT_JOURNAL_BYTES_MAX (4ull << 30) /* longest journal io_powercut_apply reads */
#define CUT_TREE_DEPTH_MAX 8u              /* folders nested in a created folder that is removed */

enum cut_kind {
    CUT_WRITE = 1,
    CUT_DONE,
    CUT_SYNC,
    CUT_DIRSYNC,
    CUT_CREATE,
    CUT_RENAME,
    CUT_UNLINK,
};

/* A record's fixed part, as on disk. */
struct cut_rec {
    uint32_t magic;     /* CUT_REC_MAGIC */
    uint16_t kind;      /* enum cut_kind */
    uint16_t flags;     /* IO_CUT_*, CUT_DIR, CUT_KEEP */
    uint64_t seq;       /* record number */
    uint64_t ino;       /* inode */
    uint64_t a;         /* offset / write seq / mark / replaced inode */
    uint64_t b;         /* write length */
    uint64_t c;         /* file size before the write */
    uint32_t path_len;  /* bytes of path */
    uint32_t path2_len; /* bytes of path2 */
    uint32_t old_len;   /* bytes of old data */
    uint32_t check;     /* FNV-1a 32 of bytes 0..59 and the payload */
};
_Static_assert(sizeof(struct cut_rec) == CUT_REC_BYTES, "record header layout");

/* The writer's index entry of one record. */
struct cut_entry {
    uint64_t seq;      /* record number */
    uint64_t ino;      /* inode (WRITE, CREATE, RENAME, UNLINK) */
    uint64_t gone_ino; /* RENAME: inode replaced; UNLINK: ino (removed for good once durable) */
    uint64_t dir;      /* CREATE, RENAME, UNLINK: hash of the folder */
    uint64_t done;     /* ring WRITE: seq of its DONE, 0 = none yet */
    uint64_t file_off; /* where the record starts in the journal */
    uint16_t kind;     /* enum cut_kind */
    uint16_t flags;    /* as in the record */
    bool settled;      /* durable, or about a file removed for good: older records never need it */
};

struct io_powercut {
    pthread_mutex_t lock;      /* guards everything below, and the order of appends */
    int fd;                    /* the journal, O_APPEND */
    char path[PATH_MAX];       /* the journal */
    uint64_t next_seq;         /* seq of the next record */
    uint64_t bytes;            /* journal size */
    struct cut_entry *entries; /* index of the records in the journal, oldest first */
    uint32_t count;            /* entries in use */
    uint32_t cap;              /* entries allocated */
};

/* ---- small helpers ---- */

static uint32_t fnv32(uint32_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

static uint64_t fnv64(const char *s, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Length of the folder part of an absolute path ("/a/b/c" -> 4: "/a/b"). */
static size_t dir_len(const char *path, size_t len)
{
    while (len > 1 && path[len - 1] != '/')
        len--;
    return len > 1 ? len - 1 : len;
}

/* Append to the journal (opened O_APPEND); file writes at offsets go through io_file_pwrite. */
static int append_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    for (int i = 0; len > 0 && i < CUT_IO_RETRY_MAX; i++) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return len == 0 ? 0 : -EIO;
}

/* The journal cannot be kept: what a cut would do is unknown from here on. */
CS_NORETURN static void cut_die(const char *what, int err)
{
    fprintf(stderr, "cstore: power-cut journal: %s: %s\n", what, strerror(err < 0 ? -err : err));
    abort();
}

/* Absolute form of path: the real path of its folder, then its last component. */
static int abs_path(const char *path, char *out, size_t size)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else if (snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path) >= (int)sizeof(dir))
        return -ENAMETOOLONG;
    char real[PATH_MAX];
    if (!realpath(dir, real))
        return -errno;
    if (base[0] == '\0') /* "dir/": the folder itself */
        return snprintf(out, size, "%s", real) < (int)size ? 0 : -ENAMETOOLONG;
    const char *sep = strcmp(real, "/") == 0 ? "" : "/";
    return snprintf(out, size, "%s%s%s", real, sep, base) < (int)size ? 0 : -ENAMETOOLONG;
}

static void keep_name(const char *journal, uint64_t seq, char *out, size_t size)
{
    if (snprintf(out, size, "%s.keep-%016" PRIx64, journal, seq) >= (int)size)
        cut_die("path of a kept file too long", ENAMETOOLONG);
}

/* ---- writing ---- */

static struct cut_entry *entry_add(struct io_powercut *p)
{
    if (p->count == p->cap) {
        uint32_t cap = p->cap ? p->cap * 2 : 256;
        struct cut_entry *e = realloc(p->entries, cap * sizeof(*e));
        if (!e)
            cut_die("index", ENOMEM);
        p->entries = e;
        p->cap = cap;
    }
    struct cut_entry *e = &p->entries[p->count++];
    memset(e, 0, sizeof(*e));
    return e;
}

static struct cut_entry *entry_find(struct io_powercut *p, uint64_t seq)
{
    uint32_t lo = 0, hi = p->count;
    while (lo < hi) { /* entries are sorted by seq */
        uint32_t mid = lo + (hi - lo) / 2;
        if (p->entries[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < p->count && p->entries[lo].seq == seq ? &p->entries[lo] : NULL;
}

/* Append one record (caller holds the lock and filled r except seq, magic, check) and index
 * it. Returns its seq. */
static uint64_t rec_append(struct io_powercut *p, struct cut_rec *r, const char *path,
                           const char *path2, const void *old)
{
    r->magic = CUT_REC_MAGIC;
    r->seq = p->next_seq++;
    r->check = 0;
    size_t total = CUT_REC_BYTES + r->path_len + r->path2_len + r->old_len;
    char *buf = malloc(total);
    if (!buf)
        cut_die("record", ENOMEM);
    memcpy(buf, r, CUT_REC_BYTES);
    if (r->path_len) /* memcpy from NULL is undefined even for 0 bytes */
        memcpy(buf + CUT_REC_BYTES, path, r->path_len);
    if (r->path2_len)
        memcpy(buf + CUT_REC_BYTES + r->path_len, path2, r->path2_len);
    if (r->old_len)
        memcpy(buf + CUT_REC_BYTES + r->path_len + r->path2_len, old, r->old_len);
    uint32_t h = fnv32(2166136261u, buf, CUT_REC_BYTES - 4);
    r->check = fnv32(h, buf + CUT_REC_BYTES, total - CUT_REC_BYTES);
    memcpy(buf + CUT_REC_BYTES - 4, &r->check, 4);
    int rc = append_all(p->fd, buf, total);
    free(buf);
    if (rc)
        cut_die("append", rc);
    struct cut_entry *e = entry_add(p);
    e->seq = r->seq;
    e->kind = r->kind;
    e->flags = r->flags;
    e->ino = r->ino;
    e->file_off = p->bytes;
    p->bytes += total;
    if (path && r->path_len)
        e->dir = fnv64(path, dir_len(path, r->path_len));
    return r->seq;
}

/* Every record about inode ino is settled: the file is gone for good. */
static void settle_ino(struct io_powercut *p, uint64_t ino)
{
    for (uint32_t i = 0; i < p->count; i++)
        if (p->entries[i].ino == ino && p->entries[i].kind != CUT_DIRSYNC)
            p->entries[i].settled = true;
}

/* Drop the settled prefix of the journal when it is worth it. */
static void compact(struct io_powercut *p)
{
    uint32_t k = 0;
    while (k < p->count && p->entries[k].settled)
        k++;
    if (k < p->count / 2 || k == 0)
        return;
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", p->path);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0)
        cut_die("compaction", errno);
    uint64_t from = k < p->count ? p->entries[k].file_off : p->bytes;
    char head[CUT_HEADER_BYTES] = {0};
    memcpy(head, CUT_MAGIC, 8);
    uint32_t version = CUT_VERSION;
    memcpy(head + 8, &version, 4);
    int rc = io_file_pwrite(NULL, out, head, sizeof(head), 0);
    static char buf[1u << 16];
    for (uint64_t off = from; !rc && off < p->bytes;) {
        size_t got = 0;
        rc = io_file_read_at(NULL, p->fd, buf, (size_t)cs_min_u64(sizeof(buf), p->bytes - off), off,
                             &got);
        if (!rc && got == 0)
            rc = -EIO;
        if (!rc)
            rc = io_file_pwrite(NULL, out, buf, got, CUT_HEADER_BYTES + (off - from));
        off += got;
    }
    if (close(out) != 0 && !rc)
        rc = -errno;
    if (rc || rename(tmp, p->path) != 0)
        cut_die("compaction", rc ? rc : errno);
    close(p->fd);
    p->fd = open(p->path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (p->fd < 0)
        cut_die("compaction", errno);
    for (uint32_t i = 0; i < k; i++) {
        if (p->entries[i].flags & CUT_KEEP) {
            char keep[PATH_MAX + 32];
            keep_name(p->path, p->entries[i].seq, keep, sizeof(keep));
            unlink(keep);
        }
    }
    memmove(p->entries, p->entries + k, (p->count - k) * sizeof(*p->entries));
    p->count -= k;
    for (uint32_t i = 0; i < p->count; i++)
        p->entries[i].file_off = p->entries[i].file_off - from + CUT_HEADER_BYTES;
    p->bytes = p->bytes - from + CUT_HEADER_BYTES;
}

static void maybe_compact(struct io_powercut *p)
{
    if (p->count >= CUT_COMPACT_AT)
        compact(p);
}

int io_powercut_open(const char *path, struct io_powercut **out)
{
    cs_assert(path != NULL);
    cs_assert(out != NULL);
    *out = NULL;
    struct io_powercut *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    int rc = abs_path(path, p->path, sizeof(p->path));
    if (rc) {
        free(p);
        return rc;
    }
    /* O_RDWR: compaction reads the journal back */
    p->fd = open(p->path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (p->fd < 0) {
        rc = -errno;
        free(p);
        return rc;
    }
    char head[CUT_HEADER_BYTES] = {0};
    memcpy(head, CUT_MAGIC, 8);
    uint32_t version = CUT_VERSION;
    memcpy(head + 8, &version, 4);
    rc = append_all(p->fd, head, sizeof(head));
    if (rc) {
        close(p->fd);
        free(p);
        return rc;
    }
    pthread_mutex_init(&p->lock, NULL);
    p->next_seq = 1;
    p->bytes = CUT_HEADER_BYTES;
    *out = p;
    return 0;
}

void io_powercut_close(struct io_powercut *p)
{
    if (!p)
        return;
    close(p->fd);
    pthread_mutex_destroy(&p->lock);
    free(p->entries);
    free(p);
}

/* The path of an open file (its name now), or -errno. */
static int fd_path(int fd, char *out, size_t size)
{
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, size - 1);
    if (n < 0)
        return -errno;
    if ((size_t)n >= size - 1)
        return -ENAMETOOLONG;
    out[n] = '\0';
    return 0;
}

uint64_t io_powercut_write(struct io_powercut *p, int fd, uint64_t off, uint64_t len,
                           unsigned flags)
{
    cs_assert(p != NULL);
    cs_assert(len <= CUT_WRITE_BYTES_MAX);
    struct stat st;
    if (fstat(fd, &st) != 0)
        cut_die("fstat", errno);
    if (st.st_nlink == 0 || len == 0)
        return 0; /* a removed file: nothing a cut could show */
    char path[PATH_MAX];
    int rc = fd_path(fd, path, sizeof(path));
    if (rc)
        cut_die("path of a written file", rc);
    /* A second open file description: reads through the page cache whatever fd's flags. */
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    int rd = open(link, O_RDONLY | O_CLOEXEC);
    if (rd < 0)
        cut_die("reopen of a written file", errno);
    uint64_t size = (uint64_t)st.st_size;
    size_t old_len = off < size ? (size_t)cs_min_u64(len, size - off) : 0;
    char *old = old_len ? malloc(old_len) : NULL;
    if (old_len && !old)
        cut_die("old bytes", ENOMEM);
    pthread_mutex_lock(&p->lock);
    size_t got = 0;
    rc = old_len ? io_file_read_at(NULL, rd, old, old_len, off, &got) : 0;
    if (rc)
        cut_die("read of old bytes", rc);
    if (got < old_len) /* the file shrank meanwhile (cstore never does): zeros */
        memset(old + got, 0, old_len - got);
    struct cut_rec r = {.kind = CUT_WRITE,
                        .flags = (uint16_t)flags,
                        .ino = (uint64_t)st.st_ino,
                        .a = off,
                        .b = len,
                        .c = size,
                        .path_len = (uint32_t)strlen(path),
                        .old_len = (uint32_t)old_len};
    uint64_t seq = rec_append(p, &r, path, NULL, old);
    maybe_compact(p);
    pthread_mutex_unlock(&p->lock);
    close(rd);
    free(old);
    return seq;
}

void io_powercut_completed(struct io_powercut *p, uint64_t seq)
{
    cs_assert(p != NULL);
    if (seq == 0)
        return;
    pthread_mutex_lock(&p->lock);
    struct cut_rec r = {.kind = CUT_DONE, .a = seq};
    uint64_t done = rec_append(p, &r, NULL, NULL, NULL);
    p->entries[p->count - 1].settled = true; /* consulted only for its write, older */
    struct cut_entry *w = entry_find(p, seq);
    if (w) {
        w->done = done;
        if (w->flags & IO_CUT_DSYNC)
            w->settled = true;
    }
    pthread_mutex_unlock(&p->lock);
}

uint64_t io_powercut_mark(struct io_powercut *p)
{
    cs_assert(p != NULL);
    pthread_mutex_lock(&p->lock);
    uint64_t mark = p->next_seq;
    pthread_mutex_unlock(&p->lock);
    return mark;
}

uint64_t io_powercut_ino(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        cut_die("fstat", errno);
    return (uint64_t)st.st_ino;
}

void io_powercut_synced(struct io_powercut *p, uint64_t ino, uint64_t mark)
{
    cs_assert(p != NULL);
    pthread_mutex_lock(&p->lock);
    struct cut_rec r = {.kind = CUT_SYNC, .ino = ino, .a = mark};
    rec_append(p, &r, NULL, NULL, NULL);
    p->entries[p->count - 1].settled = true;
    for (uint32_t i = 0; i < p->count; i++) {
        struct cut_entry *e = &p->entries[i];
        if (e->kind != CUT_WRITE || e->ino != r.ino || e->settled)
            continue;
        if ((e->flags & IO_CUT_RING) ? e->done && e->done < mark : e->seq < mark)
            e->settled = true;
    }
    maybe_compact(p);
    pthread_mutex_unlock(&p->lock);
}

void io_powercut_dir_synced(struct io_powercut *p, const char *dir, uint64_t mark)
{
    cs_assert(p != NULL);
    char real[PATH_MAX];
    if (!realpath(dir, real))
        cut_die("path of a synced folder", errno);
    size_t len = strlen(real);
    uint64_t h = fnv64(real, len);
    pthread_mutex_lock(&p->lock);
    struct cut_rec r = {.kind = CUT_DIRSYNC, .a = mark, .path_len = (uint32_t)len};
    rec_append(p, &r, real, NULL, NULL);
    p->entries[p->count - 1].settled = true;
    for (uint32_t i = 0; i < p->count; i++) {
        struct cut_entry *e = &p->entries[i];
        bool meta = e->kind == CUT_CREATE || e->kind == CUT_RENAME || e->kind == CUT_UNLINK;
        if (!meta || e->dir != h || e->settled || e->seq >= mark)
            continue;
        e->settled = true;
        if (e->gone_ino)
            settle_ino(p, e->gone_ino); /* removed for good: its older records are moot */
    }
    maybe_compact(p);
    pthread_mutex_unlock(&p->lock);
}

void io_powercut_created(struct io_powercut *p, const char *path)
{
    cs_assert(p != NULL);
    char abs[PATH_MAX];
    struct stat st;
    int rc = abs_path(path, abs, sizeof(abs));
    if (rc)
        cut_die("path of a created file", rc);
    if (lstat(abs, &st) != 0)
        cut_die("stat of a created file", errno);
    pthread_mutex_lock(&p->lock);
    struct cut_rec r = {.kind = CUT_CREATE,
                        .flags = S_ISDIR(st.st_mode) ? CUT_DIR : 0,
                        .ino = (uint64_t)st.st_ino,
                        .path_len = (uint32_t)strlen(abs)};
    rec_append(p, &r, abs, NULL, NULL);
    pthread_mutex_unlock(&p->lock);
}

/* Keep a hard link of path as the journal's keep file for seq; false when path is missing. */
static bool keep_link(struct io_powercut *p, const char *path, uint64_t seq)
{
    char keep[PATH_MAX + 32];
    keep_name(p->path, seq, keep, sizeof(keep));
    if (link(path, keep) == 0)
        return true;
    if (errno == ENOENT)
        return false;
    cut_die("hard link of a removed file", errno);
}

void io_powercut_renaming(struct io_powercut *p, const char *from, const char *to)
{
    cs_assert(p != NULL);
    char a[PATH_MAX], b[PATH_MAX];
    struct stat st, dst;
    int rc = abs_path(from, a, sizeof(a));
    if (!rc)
        rc = abs_path(to, b, sizeof(b));
    if (rc)
        cut_die("path of a renamed file", rc);
    if (lstat(a, &st) != 0)
        return; /* the rename will fail */
    pthread_mutex_lock(&p->lock);
    struct cut_rec r = {.kind = CUT_RENAME,
                        .ino = (uint64_t)st.st_ino,
                        .path_len = (uint32_t)strlen(a),
                        .path2_len = (uint32_t)strlen(b)};
    if (lstat(b, &dst) == 0 && dst.st_ino != st.st_ino) {
        r.a = (uint64_t)dst.st_ino;
        if (keep_link(p, b, p->next_seq))
            r.flags |= CUT_KEEP;
    }
    rec_append(p, &r, a, b, NULL);
    p->entries[p->count - 1].gone_ino = r.a;
    pthread_mutex_unlock(&p->lock);
}

void io_powercut_unlinking(struct io_powercut *p, const char *path)
{
    cs_assert(p != NULL);
    char a[PATH_MAX];
    struct stat st;
    int rc = abs_path(path, a, sizeof(a));
    if (rc)
        cut_die("path of a removed file", rc);
    if (lstat(a, &st) != 0)
        return; /* the unlink will fail */
    pthread_mutex_lock(&p->lock);
    struct cut_rec r = {
        .kind = CUT_UNLINK, .ino = (uint64_t)st.st_ino, .path_len = (uint32_t)strlen(a)};
    if (keep_link(p, a, p->next_seq))
        r.flags |= CUT_KEEP;
    rec_append(p, &r, a, NULL, NULL);
    p->entries[p->count - 1].gone_ino = r.ino;
    pthread_mutex_unlock(&p->lock);
}

/* ---- the cut ---- */

/* A record read back: its header and where its payload lies in the journal image. */
struct cut_read {
    struct cut_rec h;  /* header */
    const char *path;  /* path_len bytes */
    const char *path2; /* path2_len bytes */
    const char *old;   /* old_len bytes */
    uint64_t done;     /* WRITE: seq of its DONE record, 0 = none */
};

/* A byte range [lo, hi). */
struct cut_range {
    uint64_t lo, hi;
};

/* What the cut knows of one inode. */
struct cut_file {
    uint64_t ino;            /* inode */
    uint64_t sync_mark;      /* largest mark of a SYNC seen (newer than the records at hand) */
    bool where_known;        /* a newer metadata record said where the file is */
    bool gone;               /* ...namely nowhere: removed for good, or its creation undone */
    char where[PATH_MAX];    /* ...namely here */
    struct cut_range *cover; /* ranges that keep their bytes: sorted, disjoint, merged */
    uint32_t ncover, capcover;
    uint64_t cover_end;       /* end of the last covered range */
    uint64_t floor_size;      /* size before the oldest lost extending write; UINT64_MAX: none */
    char last_path[PATH_MAX]; /* where its writes were undone */
};

/* What the cut knows of one folder. */
struct cut_dir {
    uint64_t hash;      /* hash of its path */
    uint64_t sync_mark; /* largest mark of a DIRSYNC seen */
};

struct cut_state {
    uint64_t seed;
    char journal[PATH_MAX];
    struct cut_file *files;
    uint32_t nfiles, capfiles;
    struct cut_dir *dirs;
    uint32_t ndirs, capdirs;
    struct io_powercut_report rep;
};

static int grow(void **arr, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    uint32_t n = *cap ? *cap * 2 : 16;
    while (n < need)
        n *= 2;
    void *q = realloc(*arr, (size_t)n * elem);
    if (!q)
        return -ENOMEM;
    *arr = q;
    *cap = n;
    return 0;
}

/* Make room for n more files, so that pointers from file_of stay valid across n calls. */
static int files_reserve(struct cut_state *s, uint32_t n)
{
    return grow((void **)&s->files, &s->capfiles, s->nfiles + n, sizeof(*s->files));
}

static struct cut_file *file_of(struct cut_state *s, uint64_t ino)
{
    for (uint32_t i = 0; i < s->nfiles; i++)
        if (s->files[i].ino == ino)
            return &s->files[i];
    if (grow((void **)&s->files, &s->capfiles, s->nfiles + 1, sizeof(*s->files)))
        return NULL;
    struct cut_file *f = &s->files[s->nfiles++];
    memset(f, 0, sizeof(*f));
    f->ino = ino;
    f->floor_size = UINT64_MAX;
    return f;
}

static struct cut_dir *dir_of(struct cut_state *s, uint64_t hash)
{
    for (uint32_t i = 0; i < s->ndirs; i++)
        if (s->dirs[i].hash == hash)
            return &s->dirs[i];
    if (grow((void **)&s->dirs, &s->capdirs, s->ndirs + 1, sizeof(*s->dirs)))
        return NULL;
    struct cut_dir *d = &s->dirs[s->ndirs++];
    d->hash = hash;
    d->sync_mark = 0;
    return d;
}

/* Add [lo, hi) to f's covered ranges. */
static int cover_add(struct cut_file *f, uint64_t lo, uint64_t hi)
{
    if (lo >= hi)
        return 0;
    if (grow((void **)&f->cover, &f->capcover, f->ncover + 1, sizeof(*f->cover)))
        return -ENOMEM;
    uint32_t i = 0;
    while (i < f->ncover && f->cover[i].hi < lo)
        i++;
    uint32_t j = i;
    while (j < f->ncover && f->cover[j].lo <= hi) {
        lo = cs_min_u64(lo, f->cover[j].lo);
        hi = cs_max_u64(hi, f->cover[j].hi);
        j++;
    }
    /* ranges i..j-1 merge into [lo, hi) */
    if (j == i) {
        memmove(&f->cover[i + 1], &f->cover[i], (f->ncover - i) * sizeof(*f->cover));
        f->ncover++;
    } else if (j > i + 1) {
        memmove(&f->cover[i + 1], &f->cover[j], (f->ncover - j) * sizeof(*f->cover));
        f->ncover -= j - i - 1;
    }
    f->cover[i].lo = lo;
    f->cover[i].hi = hi;
    f->cover_end = cs_max_u64(f->cover_end, hi);
    return 0;
}

/* Where the file of inode f is now (record path rec_path when nothing newer said), or NULL when
 * it is gone or another file is there. */
static const char *file_where(struct cut_file *f, const char *rec_path, char *buf, size_t size)
{
    if (f->where_known && f->gone)
        return NULL;
    snprintf(buf, size, "%s", f->where_known ? f->where : rec_path);
    struct stat st;
    if (lstat(buf, &st) != 0 || (uint64_t)st.st_ino != f->ino)
        return NULL;
    return buf;
}

static void file_set_where(struct cut_file *f, const char *path)
{
    f->where_known = true;
    f->gone = path == NULL;
    if (path)
        snprintf(f->where, sizeof(f->where), "%s", path);
}

/* Put back old bytes (zeros past the old size) on [lo, hi) of the write r, except where
 * covered. */
static int restore_range(int fd, const struct cut_file *f, const struct cut_read *r, uint64_t lo,
                         uint64_t hi)
{
    static const char zeros[IO_CUT_SECTOR_BYTES * 8];
    uint64_t pos = lo;
    for (uint32_t i = 0; i <= f->ncover && pos < hi; i++) {
        uint64_t gap_hi = i < f->ncover ? cs_min_u64(hi, f->cover[i].lo) : hi;
        if (i < f->ncover && f->cover[i].hi <= pos)
            continue;
        for (uint64_t at = pos; at < gap_hi;) {
            uint64_t old_end = r->h.a + r->h.old_len;
            int rc;
            size_t n;
            if (at < old_end) {
                n = (size_t)(cs_min_u64(gap_hi, old_end) - at);
                rc = io_file_pwrite(NULL, fd, r->old + (at - r->h.a), n, at);
            } else {
                n = (size_t)cs_min_u64(gap_hi - at, sizeof(zeros));
                rc = io_file_pwrite(NULL, fd, zeros, n, at);
            }
            if (rc)
                return rc;
            at += n;
        }
        if (i < f->ncover)
            pos = cs_max_u64(pos, f->cover[i].hi);
    }
    return 0;
}

static bool write_durable(const struct cut_read *r, const struct cut_file *f)
{
    if ((r->h.flags & IO_CUT_DSYNC) && r->done)
        return true;
    if (r->h.flags & IO_CUT_RING)
        return r->done && f->sync_mark > r->done;
    return f->sync_mark > r->h.seq;
}

/* The fate of a write that is not durable. */
enum cut_fate { FATE_KEPT, FATE_TORN, FATE_LOST };

static int cut_write(struct cut_state *s, const struct cut_read *r)
{
    struct cut_file *f = file_of(s, r->h.ino);
    if (!f)
        return -ENOMEM;
    uint64_t lo = r->h.a, hi = r->h.a + r->h.b;
    if (write_durable(r, f)) {
        s->rep.writes_durable++;
        return cover_add(f, lo, hi);
    }
    enum cut_fate fate = (enum cut_fate)(mix64(s->seed ^ mix64(r->h.seq)) % 3u);
    if (fate == FATE_KEPT) {
        s->rep.writes_kept++;
        return cover_add(f, lo, hi);
    }
    char path[PATH_MAX];
    char rec_path[PATH_MAX];
    snprintf(rec_path, sizeof(rec_path), "%.*s", (int)r->h.path_len, r->path);
    if (!file_where(f, rec_path, path, sizeof(path))) {
        s->rep.skipped++;
        return 0;
    }
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    snprintf(f->last_path, sizeof(f->last_path), "%s", path);
    int rc = 0;
    /* Sectors at absolute offsets: [lo, first boundary), whole sectors, the rest. */
    for (uint64_t at = lo, n = 0; !rc && at < hi; n++) {
        uint64_t end = cs_min_u64(hi, (at / IO_CUT_SECTOR_BYTES + 1) * IO_CUT_SECTOR_BYTES);
        bool keep = fate == FATE_TORN && (mix64(s->seed ^ mix64(r->h.seq) ^ mix64(~n)) & 1u);
        rc = keep ? cover_add(f, at, end) : restore_range(fd, f, r, at, end);
        at = end;
    }
    close(fd);
    if (fate == FATE_TORN)
        s->rep.writes_torn++;
    else
        s->rep.writes_lost++;
    if (hi > r->h.c) /* the write extended the file: without it, the file may be shorter */
        f->floor_size = cs_min_u64(f->floor_size, r->h.c);
    return rc;
}

/* Remove a folder a creation made, with whatever it holds (depth-limited). */
static int remove_tree(const char *path, unsigned depth)
{
    if (depth > CUT_TREE_DEPTH_MAX)
        return -ELOOP;
    DIR *d = opendir(path);
    if (!d)
        return unlink(path) == 0 ? 0 : -errno;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char sub[PATH_MAX];
        if (snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name) >= (int)sizeof(sub)) {
            rc = -ENAMETOOLONG;
            continue;
        }
        int r2 = remove_tree(sub, depth + 1);
        rc = rc ? rc : r2;
    }
    closedir(d);
    if (rmdir(path) != 0 && !rc)
        rc = -errno;
    return rc;
}

static bool meta_durable(struct cut_state *s, const struct cut_read *r)
{
    uint64_t h = fnv64(r->path, dir_len(r->path, r->h.path_len));
    struct cut_dir *d = dir_of(s, h);
    return d && d->sync_mark > r->h.seq;
}

static int cut_meta(struct cut_state *s, const struct cut_read *r)
{
    if (files_reserve(s, 2))
        return -ENOMEM;
    struct cut_file *f = file_of(s, r->h.ino);
    if (!f)
        return -ENOMEM;
    char path[PATH_MAX], path2[PATH_MAX], where[PATH_MAX];
    snprintf(path, sizeof(path), "%.*s", (int)r->h.path_len, r->path);
    snprintf(path2, sizeof(path2), "%.*s", (int)r->h.path2_len, r->path2 ? r->path2 : "");
    char keep[PATH_MAX + 32];
    keep_name(s->journal, r->h.seq, keep, sizeof(keep));
    bool durable = meta_durable(s, r);
    if (durable)
        s->rep.meta_durable++;
    else
        s->rep.meta_undone++;
    switch (r->h.kind) {
    case CUT_CREATE:
        if (durable)
            return 0;
        if (!file_where(f, path, where, sizeof(where))) {
            s->rep.skipped++;
            return 0;
        }
        file_set_where(f, NULL);
        return (r->h.flags & CUT_DIR) ? remove_tree(where, 0) : (unlink(where) ? -errno : 0);
    case CUT_RENAME: {
        struct cut_file *g = r->h.a ? file_of(s, r->h.a) : NULL;
        if (r->h.a && !g)
            return -ENOMEM;
        if (durable) {
            if (!f->where_known)
                file_set_where(f, path2);
            if (g && !g->where_known)
                file_set_where(g, NULL); /* replaced for good */
            return 0;
        }
        if (file_where(f, path2, where, sizeof(where))) {
            if (rename(where, path) != 0)
                return -errno;
            file_set_where(f, path);
        } else {
            s->rep.skipped++;
        }
        if (g && (r->h.flags & CUT_KEEP)) {
            if (link(keep, path2) != 0 && errno != EEXIST)
                return -errno;
            file_set_where(g, path2);
        }
        return 0;
    }
    case CUT_UNLINK:
        if (durable) {
            if (!f->where_known)
                file_set_where(f, NULL);
            return 0;
        }
        if (!(r->h.flags & CUT_KEEP)) {
            s->rep.skipped++;
            return 0;
        }
        if (link(keep, path) != 0 && errno != EEXIST)
            return -errno;
        file_set_where(f, path);
        return 0;
    default:
        return 0;
    }
}

/* Cut every file back to its size before the oldest lost write that extended it (but not below
 * what durable or kept writes reach). */
static int cut_sizes(struct cut_state *s)
{
    for (uint32_t i = 0; i < s->nfiles; i++) {
        struct cut_file *f = &s->files[i];
        if (f->floor_size == UINT64_MAX || !f->last_path[0])
            continue;
        char where[PATH_MAX];
        if (!file_where(f, f->last_path, where, sizeof(where)))
            continue;
        struct stat st;
        uint64_t size = cs_max_u64(f->floor_size, f->cover_end);
        if (stat(where, &st) != 0 || (uint64_t)st.st_size <= size)
            continue;
        if (truncate(where, (off_t)size) != 0)
            return -errno;
        s->rep.truncated++;
    }
    return 0;
}

/* Parse the journal image buf[0..len) into recs (oldest first); a partial or damaged record
 * ends the list (the process died while appending it). */
static int parse(const char *buf, size_t len, struct cut_read **out, uint32_t *count)
{
    if (len < CUT_HEADER_BYTES || memcmp(buf, CUT_MAGIC, 8) != 0)
        return CS_ECORRUPT;
    uint32_t version;
    memcpy(&version, buf + 8, 4);
    if (version != CUT_VERSION)
        return CS_ECORRUPT;
    struct cut_read *recs = NULL;
    uint32_t n = 0, cap = 0;
    size_t off = CUT_HEADER_BYTES;
    while (off + CUT_REC_BYTES <= len) {
        struct cut_rec h;
        memcpy(&h, buf + off, CUT_REC_BYTES);
        uint64_t payload = (uint64_t)h.path_len + h.path2_len + h.old_len;
        if (h.magic != CUT_REC_MAGIC || payload > len - off - CUT_REC_BYTES)
            break;
        uint32_t c = fnv32(fnv32(2166136261u, buf + off, CUT_REC_BYTES - 4),
                           buf + off + CUT_REC_BYTES, (size_t)payload);
        if (c != h.check || h.kind < CUT_WRITE || h.kind > CUT_UNLINK)
            break;
        if ((h.kind == CUT_WRITE && (h.old_len > h.b || h.path_len == 0)) ||
            h.path_len >= PATH_MAX || h.path2_len >= PATH_MAX || (n && h.seq <= recs[n - 1].h.seq))
            break;
        if (grow((void **)&recs, &cap, n + 1, sizeof(*recs))) {
            free(recs);
            return -ENOMEM;
        }
        struct cut_read *r = &recs[n++];
        r->h = h;
        r->path = buf + off + CUT_REC_BYTES;
        r->path2 = r->path + h.path_len;
        r->old = r->path2 + h.path2_len;
        r->done = 0;
        off += CUT_REC_BYTES + (size_t)payload;
    }
    /* Tie each DONE to its write (seqs ascend: binary search). */
    for (uint32_t i = 0; i < n; i++) {
        if (recs[i].h.kind != CUT_DONE)
            continue;
        uint32_t lo = 0, hi = i;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (recs[mid].h.seq < recs[i].h.a)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < i && recs[lo].h.seq == recs[i].h.a && recs[lo].h.kind == CUT_WRITE)
            recs[lo].done = recs[i].h.seq;
    }
    *out = recs;
    *count = n;
    return 0;
}

static int read_journal(const char *path, char **buf, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    int rc = fstat(fd, &st) == 0 ? 0 : -errno;
    if (!rc && (uint64_t)st.st_size > CUT_JOURNAL_BYTES_MAX)
        rc = -EFBIG;
    char *b = NULL;
    size_t got = 0;
    if (!rc) {
        b = malloc((size_t)st.st_size + 1);
        rc = b ? io_file_read_at(NULL, fd, b, (size_t)st.st_size, 0, &got) : -ENOMEM;
    }
    close(fd);
    if (rc) {
        free(b);
        return rc;
    }
    *buf = b;
    *len = got;
    return 0;
}

/* Remove every "<journal>.keep-*" file. */
static void remove_keeps(const char *journal)
{
    char dir[PATH_MAX];
    size_t dl = dir_len(journal, strlen(journal));
    snprintf(dir, sizeof(dir), "%.*s", (int)dl, journal);
    const char *base = journal + dl + (journal[dl] == '/' ? 1 : 0);
    char prefix[PATH_MAX];
    snprintf(prefix, sizeof(prefix), "%s.keep-", base);
    size_t pl = strlen(prefix);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, pl) != 0)
            continue;
        char p[PATH_MAX];
        if (snprintf(p, sizeof(p), "%s/%s", dir, e->d_name) < (int)sizeof(p))
            unlink(p);
    }
    closedir(d);
}

static int cut_run(struct cut_state *s, struct cut_read *recs, uint32_t n)
{
    for (uint32_t i = n; i-- > 0;) {
        const struct cut_read *r = &recs[i];
        int rc = 0;
        switch (r->h.kind) {
        case CUT_WRITE:
            rc = cut_write(s, r);
            break;
        case CUT_DONE:
            break; /* tied to its write by parse */
        case CUT_SYNC: {
            struct cut_file *f = file_of(s, r->h.ino);
            if (!f)
                return -ENOMEM;
            f->sync_mark = cs_max_u64(f->sync_mark, r->h.a);
            break;
        }
        case CUT_DIRSYNC: {
            struct cut_dir *d = dir_of(s, fnv64(r->path, r->h.path_len));
            if (!d)
                return -ENOMEM;
            d->sync_mark = cs_max_u64(d->sync_mark, r->h.a);
            break;
        }
        default:
            rc = cut_meta(s, r);
            break;
        }
        if (rc)
            return rc;
    }
    return cut_sizes(s);
}

int io_powercut_apply(const char *path, uint64_t seed, struct io_powercut_report *rep)
{
    cs_assert(path != NULL);
    struct cut_state *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->seed = seed;
    int rc = abs_path(path, s->journal, sizeof(s->journal));
    char *buf = NULL;
    size_t len = 0;
    struct cut_read *recs = NULL;
    uint32_t n = 0;
    if (!rc)
        rc = read_journal(s->journal, &buf, &len);
    if (!rc)
        rc = parse(buf, len, &recs, &n);
    s->rep.records = n;
    if (!rc)
        rc = cut_run(s, recs, n);
    if (rc != CS_ECORRUPT)
        remove_keeps(s->journal);
    if (rep)
        *rep = s->rep;
    for (uint32_t i = 0; i < s->nfiles; i++)
        free(s->files[i].cover);
    free(s->files);
    free(s->dirs);
    free(recs);
    free(buf);
    free(s);
    return rc;
}
