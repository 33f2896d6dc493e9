/* Online backup: cs_backup() writes a consistent copy of an open database into a folder while
 * the database keeps serving.
 *
 * THE COPY (a data folder like the source's; see DATA FOLDER in engine/db.c)
 *   shard-NNN/snap-<L>          a checkpoint of the shard at LSN L, taken for this backup
 *   shard-NNN/wal-<lsn>.log     the WAL segments after it; the last one holds the frames up to
 *                               the last one whose write had completed, then zeros
 *   CSTORE                      the format record, written last: a folder without it is an
 *                               unfinished backup (and `cstore verify` says it holds no database)
 * The checkpoint and the closed WAL segments are hard links to the source's files (they are
 * never written again) where the filesystem allows, copies otherwise; the segment being appended
 * to is always copied, byte for byte and never re-encoded, up to the end of its last complete
 * frame. Every file is fsynced, then every folder (each shard folder, the backup folder, and the
 * folder that holds it when cs_backup created it).
 *
 * CONSISTENCY is per shard: each shard's copy is a prefix of that shard's history (the state
 * after some LSN, nothing torn); shards are captured one after another, so the copy is not one
 * instant across shards. In sync durability a shard's copy holds every write acknowledged before
 * cs_backup was called and nothing that was not durable. How the shard fixes its part without
 * stopping is described under "backup" in shards/shard_ckpt.c: a fresh checkpoint through the
 * checkpoint machinery, then, on the shard thread, links and descriptors for the rest; the
 * copying happens here, on the caller's thread.
 *
 * Shards go one after another, so that the serving database runs at most one extra checkpoint
 * writer at a time and the backup holds descriptors of one shard at a time.
 *
 * FAILURE. The target must be absent or an empty folder, else CS_EEXIST and nothing is touched.
 * A backup that fails removes what it created: the shard folders it made and everything in them
 * (it made them, so nothing else is there), the format record, and the target folder itself when
 * it made it. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cstore.h"
#include "engine/db.h"
#include "io/file.h"

#define BACKUP_META_NAME "CSTORE" /* the format record (engine/db.c) */
#define BACKUP_META_BYTES_MAX 4096u

/* What a running backup created, so that a failure can take it back. */
struct backup_target {
    struct io_fault *f; /* the database's fault plan, or NULL */
    char dir[PATH_MAX]; /* the backup folder */
    bool made_dir;      /* cs_backup created it */
    unsigned shards;    /* shard folders created so far (shard-000 .. shards-1) */
};

static int count_entry(void *arg, const char *name)
{
    (void)name;
    (*(unsigned *)arg)++;
    return 0;
}

/* The target must be missing (it is created) or an empty folder. */
static int target_prepare(struct backup_target *t, const char *dir)
{
    if (snprintf(t->dir, sizeof(t->dir), "%s", dir) >= (int)sizeof(t->dir))
        return -ENAMETOOLONG;
    unsigned entries = 0;
    int rc = io_dir_list(t->f, dir, count_entry, &entries);
    if (rc == -ENOENT) {
        rc = io_dir_ensure(t->f, dir); /* mkdir, then fsync of its parent */
        t->made_dir = rc == 0;
        return rc;
    }
    if (rc)
        return rc;
    return entries ? CS_EEXIST : 0;
}

/* A folder whose entries remove_entry removes. */
struct removal {
    struct io_fault *f; /* fault plan or NULL */
    const char *dir;    /* the folder */
};

static int remove_entry(void *arg, const char *name)
{
    const struct removal *r = arg;
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", r->dir, name) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    return io_file_unlink(r->f, path);
}

static int first_error(int rc, int r)
{
    return rc ? rc : r;
}

/* Take back what the backup created. Goes on past errors; the first one is reported on stderr
 * (the caller returns the error that failed the backup). */
static void target_undo(const struct backup_target *t)
{
    int rc = 0;
    for (unsigned i = 0; i < t->shards; i++) {
        char sdir[PATH_MAX];
        if (snprintf(sdir, sizeof(sdir), "%s/shard-%03u", t->dir, i) >= (int)sizeof(sdir))
            continue;
        struct removal rm = {.f = t->f, .dir = sdir};
        rc = first_error(rc, io_dir_list(t->f, sdir, remove_entry, &rm));
        rc = first_error(rc, io_dir_remove(t->f, sdir));
    }
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", t->dir, BACKUP_META_NAME) < (int)sizeof(path)) {
        int r = io_file_unlink(t->f, path); /* present only when the last step failed */
        rc = first_error(rc, r == -ENOENT ? 0 : r);
    }
    if (t->made_dir)
        rc = first_error(rc, io_dir_remove(t->f, t->dir));
    else
        rc = first_error(rc, io_dir_sync(t->f, t->dir));
    if (rc)
        fprintf(stderr,
                "cstore: backup: could not remove all that the failed backup created in %s: %s\n",
                t->dir, cs_strerror(rc));
}

/* Copy the files the shard did not link, then close every descriptor. */
static int copy_files(struct io_fault *fp, struct shard_backup *bk, const char *sdir)
{
    int rc = 0;
    for (uint32_t i = 0; i < bk->nfiles; i++) {
        struct shard_backup_file *f = &bk->files[i];
        if (f->fd < 0)
            continue;
        char dst[PATH_MAX];
        if (!rc && snprintf(dst, sizeof(dst), "%s/%s", sdir, f->name) >= (int)sizeof(dst))
            rc = -ENAMETOOLONG;
        if (!rc)
            rc = io_file_copy(fp, f->fd, dst, f->copy_bytes, f->file_bytes);
        io_file_close(f->fd);
        f->fd = -1;
    }
    return rc;
}

/* Back up shard i into t->dir/shard-NNN (created here). */
static int backup_shard(cs_db *db, struct backup_target *t, unsigned i)
{
    char sdir[PATH_MAX];
    if (snprintf(sdir, sizeof(sdir), "%s/shard-%03u", t->dir, i) >= (int)sizeof(sdir))
        return -ENAMETOOLONG;
    int rc = io_dir_ensure(t->f, sdir);
    if (rc)
        return rc;
    t->shards = i + 1;
    struct waiter w;
    waiter_init(&w, SHARD_BACKUP);
    w.req.key = sdir;
    w.req.klen = strlen(sdir);
    rc = db_call(db, i, &w);
    struct shard_backup *bk = w.req.out;
    if (rc) {
        cs_assert(bk == NULL);
        return rc;
    }
    cs_assert(bk != NULL);
    cs_assert(bk->nfiles >= 2); /* the checkpoint and at least the segment being appended to */
    cs_assert(bk->linked < bk->nfiles); /* the segment being appended to is always copied */
    cs_assert(bk->wal_lsn >= bk->ckpt_lsn);
    rc = copy_files(t->f, bk, sdir);
    cs_mem_free(bk);
    if (!rc)
        rc = io_dir_sync(t->f, sdir);
    return rc;
}

/* The format record, written last (tmp file, fsync, rename, fsync of the folder). */
static int copy_meta(const cs_db *db, const struct backup_target *t)
{
    char src[PATH_MAX];
    if (snprintf(src, sizeof(src), "%s/%s", db->dir, BACKUP_META_NAME) >= (int)sizeof(src))
        return -ENAMETOOLONG;
    void *buf = NULL;
    size_t len = 0;
    int rc = io_file_read_all(t->f, src, BACKUP_META_BYTES_MAX, &buf, &len);
    if (!rc)
        rc = io_file_replace(t->f, t->dir, BACKUP_META_NAME, buf, len);
    cs_mem_free(buf);
    return rc;
}

int cs_backup(cs_db *db, const char *dir)
{
    if (!db || !dir || !dir[0])
        return CS_EINVAL;
    if (db->opt.durability == SHARD_NONE)
        return CS_ENOTSUP;
    struct backup_target t = {.f = db->fault, .made_dir = false, .shards = 0};
    int rc = target_prepare(&t, dir);
    if (rc)
        return rc; /* nothing was created */
    for (unsigned i = 0; i < db->nshards && !rc; i++)
        rc = backup_shard(db, &t, i);
    if (!rc)
        rc = copy_meta(db, &t);
    if (rc)
        target_undo(&t);
    return rc;
}
