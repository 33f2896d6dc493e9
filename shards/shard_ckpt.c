/* Checkpoints and online backups of a running shard.
 *
 * The shard snapshots every collection (O(1) each) and hands the snapshots to a writer thread,
 * which writes snap-<lsn>.tmp (see checkpoint.c) while the loop keeps serving. When the writer is
 * done and every LSN the checkpoint holds is durable, the shard publishes it (rename, folder
 * fsync: a few milliseconds on the loop, once per checkpoint) and removes the WAL segments it
 * covers. Requests that arrive while one is being written get the next one. */
#include "shards/shard_int.h"

static void *ckpt_main(void *arg)
{
    struct shard *sh = arg;
    int rc = ckpt_write(sh->ckpt); /* also kept in the job, read by shard_ckpt_poll */
    (void)rc;
    atomic_store(&sh->ckpt_written, 1);
    shard_wake(sh);
    return NULL;
}

static void ckpt_release(struct shard *sh, struct ckpt_job *job)
{
    for (size_t i = 0; i < job->ncolls; i++) {
        struct shard_coll *c = job->colls[i].owner;
        uint64_t before = tree_bytes_before(c), count = c->tree.count;
        btree_snap_release(&c->tree, &job->colls[i].snap);
        tree_bytes_after(sh, c, before, count);
        coll_unref(sh, c);
    }
    free(job->colls);
    free(job->txn);
    free(job);
}

int shard_ckpt_start(struct shard *sh)
{
    SHARD_OWNED(sh);
    cs_assert(!sh->ckpt);
    size_t n = 0;
    for (unsigned b = 0; b < COLL_BUCKETS; b++)
        for (struct shard_coll *c = sh->by_name[b]; c; c = c->next_name)
            n++;
    struct ckpt_job *job = calloc(1, sizeof(*job));
    if (job)
        job->colls = calloc(n ? n : 1, sizeof(*job->colls));
    if (!job || !job->colls) {
        free(job);
        return -ENOMEM;
    }
    snprintf(job->dir, sizeof(job->dir), "%s", sh->dir);
    job->fault = sh->cfg.fault;
    job->shard = sh->cfg.index;
    job->lsn = sh->applied_lsn;
    job->next_coll_id = sh->next_coll_id;
    job->now_ms = cs_clock_ms(); /* records expired by now are left out */
    for (unsigned b = 0; b < COLL_BUCKETS; b++)
        for (struct shard_coll *c = sh->by_name[b]; c; c = c->next_name) {
            struct ckpt_coll *k = &job->colls[job->ncolls++];
            k->id = c->id;
            k->name_len = c->name_len;
            memcpy(k->name, c->name, c->name_len);
            uint64_t before = tree_bytes_before(c), count = c->tree.count;
            btree_snap_take(&c->tree, &k->snap);
            tree_bytes_after(sh, c, before, count);
            k->owner = c;
            c->refs++;
        }
    int trc = txn_ckpt_encode(sh, job); /* what the log before job->lsn told of transactions */
    if (trc) {
        ckpt_release(sh, job);
        return trc;
    }
    sh->ckpt = job;
    atomic_store(&sh->ckpt_written, 0);
    int rc = -pthread_create(&sh->ckpt_thread, NULL, ckpt_main, sh);
    if (rc) {
        sh->ckpt = NULL;
        ckpt_release(sh, job);
        return rc;
    }
    sh->wal_bytes_since_ckpt = 0;
    sh->ckpt_start_ns = cs_now_ns();
    return 0;
}

static void backup_capture(struct shard *sh, struct shard_req *r);

/* Complete the requests a checkpoint answers; a backup's answer is taken now, on the published
 * checkpoint (see "backup"). */
static void ckpt_answer(struct shard *sh, struct shard_req *list, int rc)
{
    while (list) {
        struct shard_req *next = list->next;
        if (list->op == SHARD_BACKUP && rc == 0)
            backup_capture(sh, list);
        else
            req_complete(list, rc);
        list = next;
    }
}

/* Publish the written checkpoint once what it holds is durable; then start a queued one. */
void shard_ckpt_poll(struct shard *sh)
{
    SHARD_OWNED(sh);
    struct ckpt_job *job = sh->ckpt;
    if (!job || !atomic_load(&sh->ckpt_written))
        return;
    if (!job->rc && !sh->io_error && !sh->ckpt_doomed && sh->durable_lsn < job->lsn)
        return;
    pthread_join(sh->ckpt_thread, NULL);
    bool doomed = sh->ckpt_doomed;
    sh->ckpt_doomed = false;
    int rc = job->rc ? job->rc : (sh->io_error ? CS_EIO : 0);
    if (!rc && doomed) {
        /* written from state that was rolled back: throw it away and take a new one for the
         * requests that wait (below) */
        char tmp[PATH_MAX + 64];
        snprintf(tmp, sizeof(tmp), "%s/snap-%016" PRIx64 ".tmp", sh->dir, job->lsn);
        io_file_discard(sh->cfg.fault, tmp);
        sh->ckpt = NULL;
        ckpt_release(sh, job);
        struct shard_req **tail = &sh->ckpt_waiters;
        while (*tail)
            tail = &(*tail)->next;
        *tail = sh->ckpt_next;
        sh->ckpt_next = NULL;
        if (sh->ckpt_waiters && shard_ckpt_start(sh) != 0) {
            ckpt_answer(sh, sh->ckpt_waiters, -ENOMEM);
            sh->ckpt_waiters = NULL;
        }
        return;
    }
    /* the checkpoint before this one stays, with the WAL since it: the fallback should this one
     * be found damaged at the next open */
    if (!rc)
        rc = ckpt_publish(sh->cfg.fault, sh->dir, job->lsn, sh->ckpt_lsn);
    if (!rc)
        rc = wal_drop_before(&sh->wal, sh->ckpt_lsn);
    if (!rc) {
        sh->ckpt_lsn = job->lsn;
        sh->stats.checkpoints++;
        sh->stats.checkpoint_lsn = job->lsn;
        shard_hist_since(sh, SHARD_HIST_CHECKPOINT, sh->ckpt_start_ns);
    } else {
        fprintf(stderr, "cstore: shard %u: checkpoint at LSN %" PRIu64 " failed: %s\n",
                sh->cfg.index, job->lsn, cs_strerror(rc));
    }
    sh->ckpt = NULL;
    ckpt_release(sh, job);
    struct shard_req *done = sh->ckpt_waiters;
    sh->ckpt_waiters = sh->ckpt_next;
    sh->ckpt_next = NULL;
    ckpt_answer(sh, done, rc);
    if (sh->ckpt_waiters) {
        rc = sh->io_error ? CS_EIO : shard_ckpt_start(sh);
        if (rc) {
            ckpt_answer(sh, sh->ckpt_waiters, rc);
            sh->ckpt_waiters = NULL;
        }
    }
}

void exec_checkpoint(struct shard *sh, struct shard_req *r)
{
    SHARD_OWNED(sh);
    if (!sh->wal_on) {
        req_complete(r, CS_ENOTSUP);
        return;
    }
    if (sh->io_error) {
        req_complete(r, CS_EIO);
        return;
    }
    if (sh->ckpt) {
        r->next = sh->ckpt_next;
        sh->ckpt_next = r;
        return;
    }
    int rc = shard_ckpt_start(sh);
    if (rc) {
        req_complete(r, rc);
        return;
    }
    r->next = NULL;
    sh->ckpt_waiters = r;
}

/* Recovery: collections and records of the newest checkpoint. */
int shard_load_coll(void *arg, uint32_t id, const char *name, size_t len)
{
    struct shard *sh = arg;
    if (coll_find_id(sh, id) || coll_find(sh, name, len))
        return CS_ECORRUPT;
    sh->load_coll = coll_add(sh, id, name, len);
    return sh->load_coll ? 0 : -ENOMEM;
}

int shard_load_rec(void *arg, const void *key, size_t klen, const void *val, size_t vlen,
                   uint64_t expire_ms)
{
    struct shard *sh = arg;
    struct shard_coll *c = sh->load_coll;
    uint64_t before = tree_bytes_before(c), count = c->tree.count;
    bool replaced = false;
    int rc = btree_put_exp(&c->tree, key, klen, val, vlen, expire_ms, &replaced);
    if (expire_ms)
        sh->expire_hint = true;
    tree_bytes_after(sh, c, before, count);
    return rc ? rc : (replaced ? CS_ECORRUPT : 0);
}

/* ---- backup ----
 * SHARD_BACKUP (engine/backup.c sends it to one shard at a time) gives the caller a consistent
 * copy of the shard's durable history: a checkpoint at some LSN L plus the whole WAL frames after
 * it up to the last one whose write completed. It works in three steps:
 *   1. exec_backup queues the request as a checkpoint request (exec_checkpoint). One that comes
 *      while a checkpoint is being written waits for the next, so the checkpoint is fresh: it
 *      holds every write applied before the request arrived, and so every write acknowledged
 *      before cs_backup was called.
 *   2. When that checkpoint is published (shard_ckpt_poll: renamed, and the WAL segments it covers
 *      removed), ckpt_answer calls backup_capture on the shard thread, before anything else can
 *      change the folder. It hard-links into the backup's shard folder:
 *        - snap-<L>, the checkpoint just published: it is never written again;
 *        - each closed WAL segment (not the one being appended to): it was fdatasync'ed before
 *          the writer left it (wal_seal) and is never written again.
 *      The segment being appended to is never linked: the link would share the file, and
 *      so every frame written after the backup. It gets a read-only descriptor and a length
 *      instead: the end of the last frame whose write completed, wal.seg_off, or when a frame
 *      is in flight, where that frame starts (io.off: the frame in flight may be half written,
 *      so it is left out; frames start fresh blocks, so no byte before it is written again). Where
 * the filesystem refuses links (another filesystem, EXDEV; EPERM, EMLINK), a closed file gets a
 * descriptor as well and is copied whole.
 *   3. The caller (engine/backup.c) copies each descriptor's [0, length) byte for byte into the
 *      backup folder, leaves the rest of the file zero (a hole), and fsyncs files and folders.
 *      It does so off the shard thread: the shard goes on serving meanwhile. What the loop
 *      itself pays is step 2: one folder listing, one open or link per file (a few, right after
 *      a checkpoint), once per backup.
 * Why the copy is a prefix of the shard's history. The checkpoint holds exactly LSNs <= L. The
 * segments after it are contiguous (a removed segment held only LSNs <= L), and hold whole frames
 * in LSN order up to the length taken in step 2; after that the copy reads zeros, which recovery
 * reads as the clean end of the log (WAL recovery in wal.c). Bytes before that length are never
 * changed later: the next frame's write rewrites the block holding the length with the same
 * bytes up to it (BLOCKS in wal.c), so a copy that reads the block meanwhile sees the same
 * bytes. The descriptors keep the files readable when a later checkpoint removes them, since the
 * WAL unlinks segments and never reuses one (a WAL that recycled segment files would have to skip
 * those with more than one link, and hold recycling off while a backup copies).
 * Durability modes. sync: every frame up to the length is durable, and the copy holds every
 * write acknowledged before cs_backup was called and nothing that was not durable at step 2.
 * async: frames written but not yet fdatasync'ed are in the copy too (the caller fsyncs it):
 * the copy holds the writes applied up to some point at or after the call. none: no WAL, no
 * checkpoint: CS_ENOTSUP.
 * The copy shares the checkpoint and the closed segments with the source (hard links); cstore
 * writes neither again, except salvage cutting damage inside one. */

void exec_backup(struct shard *sh, struct shard_req *r)
{
    SHARD_OWNED(sh);
    if (!r->key || r->klen == 0 || r->klen >= PATH_MAX || ((const char *)r->key)[r->klen] != '\0') {
        req_complete(r, CS_EINVAL);
        return;
    }
    exec_checkpoint(sh, r); /* CS_ENOTSUP without a WAL, CS_EIO when read-only */
}

/* First LSNs of the WAL segments of a shard folder, as io_dir_list finds them. */
struct backup_segs {
    uint64_t *lsn;  /* first LSNs (unsorted until the walk ends) */
    uint32_t count; /* entries used */
    uint32_t cap;   /* entries allocated */
};

/* io_dir_list callback: collect `wal-<16 hex>.log` (the segment names of wal.c). */
static int backup_seg_found(void *arg, const char *name)
{
    struct backup_segs *segs = arg;
    if (strlen(name) != 24 || strncmp(name, "wal-", 4) != 0 || strcmp(name + 20, ".log") != 0)
        return 0;
    uint64_t lsn = 0;
    for (int i = 4; i < 20; i++) {
        char c = name[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return 0;
        lsn = lsn << 4 | (uint64_t)v;
    }
    if (segs->count == WAL_SEGMENTS_MAX)
        return CS_EFULL;
    int rc = shard_array_grow((void **)&segs->lsn, &segs->cap, segs->count + 1, sizeof(uint64_t));
    if (rc)
        return rc;
    segs->lsn[segs->count++] = lsn;
    return 0;
}

static int backup_lsn_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Where the last frame whose write completed ends, in the segment being appended to. */
static uint64_t backup_wal_end(const struct shard *sh)
{
    if (!sh->wal.in_flight)
        return sh->wal.seg_off;
    cs_assert(sh->io.fd == sh->wal.fd); /* wal_seal moves to a new segment before the write */
    uint64_t end = sh->io.off; /* frames start fresh blocks: nothing before it changes again */
    cs_assert(end >= WAL_IO_ALIGN);
    cs_assert(end < sh->wal.seg_off);
    return end;
}

/* Put the source file name into the backup: a hard link unless must_copy or the filesystem
 * refuses; else a descriptor and copy_bytes (at most the file's size) for the caller. */
static int backup_add(struct shard *sh, struct shard_backup *bk, const char *dst_dir,
                      const char *name, bool must_copy, uint64_t copy_bytes)
{
    struct shard_backup_file *f = &bk->files[bk->nfiles];
    char src[PATH_MAX], dst[PATH_MAX];
    if (snprintf(f->name, sizeof(f->name), "%s", name) >= (int)sizeof(f->name) ||
        snprintf(src, sizeof(src), "%s/%s", sh->dir, name) >= (int)sizeof(src) ||
        snprintf(dst, sizeof(dst), "%s/%s", dst_dir, name) >= (int)sizeof(dst))
        return -ENAMETOOLONG;
    f->fd = -1;
    f->copy_bytes = f->file_bytes = 0;
    if (!must_copy) {
        int rc = io_file_link(sh->cfg.fault, src, dst);
        if (!rc) {
            bk->nfiles++;
            bk->linked++;
            return 0;
        }
        if (!io_link_unsupported(rc))
            return rc;
    }
    int rc = io_file_open(sh->cfg.fault, src, O_RDONLY, &f->fd);
    if (!rc)
        rc = io_file_size(f->fd, &f->file_bytes);
    if (!rc && copy_bytes > f->file_bytes)
        rc = CS_ECORRUPT;
    if (rc) {
        io_file_close(f->fd);
        f->fd = -1;
        return rc;
    }
    f->copy_bytes = must_copy ? copy_bytes : f->file_bytes;
    bk->nfiles++;
    return 0;
}

/* Undo backup_add: close the descriptors, remove the links (a link left behind is reported:
 * the caller removes the backup's folders and would say so too). */
static void backup_discard(struct shard *sh, struct shard_backup *bk, const char *dst_dir)
{
    for (uint32_t i = 0; i < bk->nfiles; i++) {
        struct shard_backup_file *f = &bk->files[i];
        if (f->fd >= 0) {
            io_file_close(f->fd);
            continue;
        }
        char dst[PATH_MAX];
        int rc = snprintf(dst, sizeof(dst), "%s/%s", dst_dir, f->name) < (int)sizeof(dst)
                     ? io_file_unlink(sh->cfg.fault, dst)
                     : -ENAMETOOLONG;
        if (rc)
            fprintf(stderr, "cstore: shard %u: backup: could not remove %s/%s: %s\n", sh->cfg.index,
                    dst_dir, f->name, cs_strerror(rc));
    }
    cs_mem_free(bk);
}

/* Step 2 above, right after the checkpoint was published: link or hand out every file the backup
 * needs, then complete r (r->out: the struct shard_backup). On failure nothing stays linked. */
static void backup_capture(struct shard *sh, struct shard_req *r)
{
    cs_assert(r->op == SHARD_BACKUP);
    cs_assert(sh->wal_on);
    const char *dst_dir = r->key;
    struct backup_segs segs = {0};
    int rc = io_dir_list(sh->cfg.fault, sh->dir, backup_seg_found, &segs);
    struct shard_backup *bk = NULL;
    if (!rc) {
        qsort(segs.lsn, segs.count, sizeof(uint64_t), backup_lsn_cmp);
        bk = cs_mem_alloc(sh->arena, sizeof(*bk) + (1u + segs.count) * sizeof(bk->files[0]));
        rc = bk ? 0 : -ENOMEM;
    }
    if (!rc) {
        memset(bk, 0, sizeof(*bk));
        bk->ckpt_lsn = sh->ckpt_lsn;
        bk->wal_lsn = cs_max_u64(sh->written_lsn, sh->ckpt_lsn);
        char name[32];
        snprintf(name, sizeof(name), "snap-%016" PRIx64, sh->ckpt_lsn);
        rc = backup_add(sh, bk, dst_dir, name, false, 0);
    }
    bool active_seen = false;
    for (uint32_t i = 0; !rc && i < segs.count; i++) {
        char name[32];
        snprintf(name, sizeof(name), "wal-%016" PRIx64 ".log", segs.lsn[i]);
        bool active = segs.lsn[i] == sh->wal.seg_first_lsn;
        if (active_seen) {
            rc = CS_ECORRUPT; /* a segment after the one being appended to: not the WAL's */
            break;
        }
        active_seen = active;
        rc = backup_add(sh, bk, dst_dir, name, active, active ? backup_wal_end(sh) : 0);
    }
    if (!rc && !active_seen)
        rc = CS_ECORRUPT; /* the segment being appended to is gone from the folder */
    free(segs.lsn);
    if (rc) {
        if (bk)
            backup_discard(sh, bk, dst_dir);
        req_complete(r, rc);
        return;
    }
    r->out = bk;
    r->out_len = sizeof(*bk) + bk->nfiles * sizeof(bk->files[0]);
    req_complete(r, 0);
}
