/* The shard runtime.
 *
 * A shard is one thread pinned to one CPU. It owns, and alone touches: one copy-on-write B+ tree
 * per collection present on the shard, the shard's WAL, its io_uring, and its jemalloc arena.
 * Application threads reach it only through its inbox: a Concurrency Kit lock-free stack
 * (ck_stack_push_upmc: one CAS, no producer ever waits for another) that the shard empties whole
 * with one atomic exchange (ck_stack_batch_pop_upmc) and reverses into arrival order. A ring was
 * tried first: with more application threads than cores, a producer preempted between reserving
 * and publishing its slot made every later producer spin until it ran again. The inbox needs no
 * capacity of its own: requests are owned by their submitters, so the queue is bounded by what
 * is in flight (one per blocking caller, `depth` per session). The submitter owns each request's
 * memory and is told of completion through the request's done() callback, run on the shard
 * thread.
 *
 * THE LOOP
 *   1. take up to batch_max requests from the inbox and execute them against the trees; writes
 *      append their WAL records to the open frame (stop early once the frame holds
 *      WAL_FRAME_SOFT_BYTES);
 *   2. if no frame is being written and the open frame is not empty, seal it and submit one
 *      write, with RWF_DSYNC in sync mode (a plain write in async mode): group commit —
 *      requests that arrive while a write is in flight form the next frame;
 *   3. submit and reap io_uring completions: a finished frame makes its LSNs durable and completes
 *      every pending request whose LSN is now durable; an eventfd read wakes an idle loop;
 *   4. with nothing to do, block in io_uring until a completion arrives: an idle shard uses no
 *      CPU (in sync mode it first yields for up to yield_us after a write's submission; see
 *      wait_count). The loop exchanges a sleeping flag to 1 and then looks at the inbox; a
 *      submitter pushes, then exchanges the flag to 0 and wakes the loop (eventfd) if it was
 *      1. Both exchange the same word, so a wake-up is never lost.
 *
 * DURABILITY RULES
 *   sync  — a write completes after the frame holding its record is written and fdatasync'ed.
 *           Every other request (reads too, and "not found" answers) completes only once every
 *           LSN applied before it executed is durable: a read never returns a value a crash
 *           could still lose. Pending requests form one FIFO list in LSN order.
 *   async — requests complete when executed; frames are written as in sync mode and fdatasync'ed
 *           every sync_interval_ms.
 *   none  — no WAL: the trees are the only copy.
 *   A failed write or fdatasync is never retried: the shard turns read-only (io_error), every
 *   pending and later write fails with CS_EIO; reads keep working.
 *
 * VIEWS (lock-free reads). Application threads read without the shard: each collection has a
 * published view, an O(1) B+ tree snapshot (struct shard_view) that never changes, and a get or
 * a cursor reads it directly, inside a Concurrency Kit epoch section (common/epoch.c). Because
 * the tree is copy-on-write, the shard keeps writing while views are read: a node a view reaches
 * is shared, so the writer copies it instead of changing it. Which state a view may show:
 *   sync  — only what is durable. When a frame is sealed while readers use views (one missed
 *           in the last VIEW_HOLD_NS: views_needed), the shard snapshots every collection the
 *           frame changed (views_capture); when the frame is durable it publishes them, and only
 *           then acknowledges the frame's requests. Frames sealed with no reader about publish
 *           nothing (their changes copy no nodes: the frame undo is a log, see "frame undo");
 *           the next reader misses, asks, and the shard publishes at the next seal or, when
 *           everything applied is durable, at once.
 *   async, none — what is acknowledged. Views are published on demand: when a reader misses, it
 *           asks (view_wanted) and takes the queue; the shard publishes the live trees at the end
 *           of its loop iteration. A bulk load that nobody reads never pays for snapshots.
 * Freshness: ack_seq counts the changes that may have been acknowledged, view_seq those the
 * views hold; the shard stores view_seq before ack_seq, before any completion. A reader that sees
 * view_seq < ack_seq misses (falls back to the queue): it may be asked to read its own write. An
 * unpublished view is retired through ck_epoch_call and released on the shard thread once no
 * reader can be inside it, unless a cursor pinned it (pins): then the last unpin hands it back
 * through the view_free stack. The catalog's hash chains are read lock-free too (release stores
 * on link, and a dropped collection's memory is freed after a grace period).
 *
 * COLLECTIONS. Each shard keeps its own catalog: a collection exists on a shard once a
 * WAL_COLL_CREATE record (shard-local id, name) is logged, which happens on the first put into it
 * or on an explicit create broadcast to every shard. A drop logs WAL_COLL_DROP. Ids are never
 * reused, so replay of a dropped collection's records is unambiguous. A collection's memory lives
 * until the last snapshot on it is released.
 */
#include "shard.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <xxhash.h>
#include <inttypes.h>

#include "epoch.h"
#include "io/fault.h"
#include "io/file.h"

#define COLL_BUCKETS 1024u /* hash buckets of the per-shard catalog (power of two) */
#define EVENTS_MAX 32u     /* completions reaped per io_ring_run */

enum shard_tag {
    TAG_WAKE = 1,  /* eventfd read */
    TAG_WRITE = 2, /* frame write (in sync mode with RWF_DSYNC) */
    TAG_DELAY = 4, /* group-commit delay timer */
    TAG_SYNC = 5,  /* async-mode sync timer */
    TAG_FSYNC = 6, /* async-mode lone fdatasync */
    TAG_EPOCH = 7, /* poll the epoch again: retired views wait for readers */
};

#define TRIM_BYTES (4u << 20)   /* see mem_trim */
#define YIELD_RECORDS_MAX 4u    /* a frame of at most this many records: yield while in flight */
#define VIEW_HOLD_NS 100000000u /* see views_needed */
#define UNDO_VALUE_MAX 256u     /* larger old values: the frame snapshots the tree instead */
#define UNDO_LOG_BYTES_MAX (4u << 20) /* a frame's undo log; past it, snapshots */
#define EPOCH_POLL_NS 1000000         /* period of TAG_EPOCH while deferrals are pending */
#define VIEW_RETIRED 0x80000000u      /* shard_view.pins: unpublished; the last unpin releases it */

struct shard_coll {
    struct shard_coll *next_name;  /* by_name chain */
    struct shard_coll *next_id;    /* by_id chain */
    uint32_t id;                   /* shard-local id, never reused */
    uint32_t refs;                 /* 1 while in the catalog + 1 per open snapshot */
    bool dropped;                  /* removed from the catalog */
    uint64_t undo_seq;             /* frame whose undo lists this collection (0: none) */
    uint32_t undo_idx;             /* its index in that frame's trees[] */
    uint8_t name_len;              /* bytes of name */
    bool dirty;                    /* on the shard's dirty list (which holds a reference) */
    struct shard_coll *next_dirty; /* dirty list link */
    struct shard_view *view;       /* published view or NULL (atomic: read by readers) */
    struct shard *sh;              /* owner (for deferred frees) */
    ck_epoch_entry_t epoch_entry;  /* deferred free */
    char name[CS_NAME_MAX + 1];    /* NUL-terminated */
    struct btree tree;             /* the records */
};

struct shard_view {
    struct btree_snap snap;          /* holds the root */
    struct shard_coll *coll;         /* holds a reference */
    struct shard *sh;                /* owner */
    uint32_t pins;                   /* cursors holding it, | VIEW_RETIRED (atomic) */
    ck_epoch_entry_t epoch_entry;    /* deferred retirement */
    struct ck_stack_entry free_link; /* view_free link */
};

static void shard_wake(struct shard *sh);

/* ---- catalog ---- */

static uint32_t name_bucket(const char *name, size_t len)
{
    return (uint32_t)XXH3_64bits(name, len) & (COLL_BUCKETS - 1);
}

static struct shard_coll *coll_find(struct shard *sh, const char *name, size_t len)
{
    struct shard_coll *c = sh->by_name[name_bucket(name, len)];
    for (; c; c = c->next_name)
        if (c->name_len == len && memcmp(c->name, name, len) == 0)
            return c;
    return NULL;
}

static struct shard_coll *coll_find_id(struct shard *sh, uint32_t id)
{
    struct shard_coll *c = sh->by_id[id & (COLL_BUCKETS - 1)];
    for (; c; c = c->next_id)
        if (c->id == id)
            return c;
    return NULL;
}

static void coll_free_cb(ck_epoch_entry_t *e)
{
    struct shard_coll *c =
        (struct shard_coll *)((char *)e - offsetof(struct shard_coll, epoch_entry));
    cs_epoch_grace();
    c->sh->retired--;
    cs_mem_free(c);
}

/* The last reference frees the tree now and the struct after a grace period: a reader may still
 * be walking a hash chain through it. */
static void coll_unref(struct shard *sh, struct shard_coll *c)
{
    cs_assert(c->refs > 0);
    if (--c->refs > 0)
        return;
    sh->tree_bytes -= c->tree.bytes;
    btree_destroy(&c->tree);
    sh->retired++;
    ck_epoch_call(sh->erec, &c->epoch_entry, coll_free_cb);
}

/* c changed: its view must be taken again before it is published. */
static void coll_dirty(struct shard *sh, struct shard_coll *c)
{
    sh->wseq++;
    if (c->dirty)
        return;
    c->dirty = true;
    c->refs++;
    c->next_dirty = sh->dirty;
    sh->dirty = c;
}

/* Catalog links are read by lock-free readers: they are stored with release. */
static void link_store(struct shard_coll **p, struct shard_coll *c)
{
    __atomic_store_n(p, c, __ATOMIC_RELEASE);
}

static struct shard_coll *coll_add(struct shard *sh, uint32_t id, const char *name, size_t len)
{
    cs_assert(len > 0 && len <= CS_NAME_MAX);
    struct shard_coll *c = cs_mem_alloc(sh->arena, sizeof(*c));
    if (!c)
        return NULL;
    memset(c, 0, sizeof(*c));
    c->id = id;
    c->refs = 1;
    c->name_len = (uint8_t)len;
    c->sh = sh;
    memcpy(c->name, name, len);
    btree_init(&c->tree, sh->arena);
    uint32_t b = name_bucket(name, len);
    c->next_name = sh->by_name[b];
    link_store(&sh->by_name[b], c);
    c->next_id = sh->by_id[id & (COLL_BUCKETS - 1)];
    sh->by_id[id & (COLL_BUCKETS - 1)] = c;
    if (id >= sh->next_coll_id)
        sh->next_coll_id = id + 1;
    sh->stats.collections++;
    coll_dirty(sh, c);
    return c;
}

static void coll_remove(struct shard *sh, struct shard_coll *c)
{
    struct shard_coll **p = &sh->by_name[name_bucket(c->name, c->name_len)];
    while (*p != c)
        p = &(*p)->next_name;
    link_store(p, c->next_name);
    p = &sh->by_id[c->id & (COLL_BUCKETS - 1)];
    while (*p != c)
        p = &(*p)->next_id;
    *p = c->next_id;
    __atomic_store_n(&c->dropped, true, __ATOMIC_RELEASE);
    coll_dirty(sh, c);
    sh->stats.collections--;
    sh->stats.records -= c->tree.count;
    coll_unref(sh, c);
}

/* Tree bytes are accounted per shard: callers wrap each tree change in these two. */
static uint64_t tree_bytes_before(const struct shard_coll *c)
{
    return c->tree.bytes;
}

static void tree_bytes_after(struct shard *sh, const struct shard_coll *c, uint64_t before,
                             uint64_t count_before)
{
    sh->tree_bytes += c->tree.bytes - before;
    if (sh->tree_bytes > sh->tree_bytes_peak)
        sh->tree_bytes_peak = sh->tree_bytes;
    if (!c->dropped)
        sh->stats.records += c->tree.count - count_before;
}

/* ---- frame undo ----
 * In sync mode a write changes the trees before its frame is durable. If that frame cannot be
 * written (ENOSPC, or an I/O error), what it changed is taken back, so that no reader ever sees
 * it. undo[wal.open] belongs to the frame being filled, undo[wal.open ^ 1] to the frame in
 * flight. A durable frame releases its undo; a failed one rolls it back.
 *
 * A put or delete is undone logically: before it changes the tree, undo_record copies the key
 * and what the key held (or that it held nothing) into the frame's log, and rolling back puts
 * the old values back, newest first. This costs a lookup and a copy of about one record per
 * write. A snapshot of the tree (O(1), but every node the frame then changes is copied first:
 * one 4 KiB node per write of a small frame) is taken instead, from that point of the frame on,
 * when a write replaces a large value (a blob: copying it could be costly; a snapshot shares
 * it), when the frame's log passes UNDO_LOG_BYTES_MAX, and for atomic batches (which snapshot
 * the tree for their own rollback anyway). Rolling back a tree with a snapshot restores the
 * snapshot first (the state at that point) and then undoes the logged writes before it.
 *
 * Putting an old value back may need memory (a split); if that fails the live tree holds
 * writes that are not durable and cannot be taken back: the shard is then fenced (read-only,
 * and reads of its live trees fail with CS_EIO; the published views hold only durable states
 * and stay readable) until the database is reopened and recovers from its log. Catalog
 * changes are logged and undone after the trees. */

/* Grow *arr (malloc memory) to hold need elements of elem bytes, doubling. */
static int array_grow(void **arr, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    uint32_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *p = realloc(*arr, (size_t)n * elem);
    if (!p)
        return -ENOMEM;
    *arr = p;
    *cap = n;
    return 0;
}

/* Make room for a request's undo entries, so that recording them cannot fail (the logged
 * writes' log entries are grown by undo_record, before the write). */
static int undo_reserve(struct shard *sh, size_t trees, size_t cats)
{
    if (!sh->undo_on)
        return 0;
    struct frame_undo *u = &sh->undo[sh->wal.open];
    int rc = array_grow((void **)&u->trees, &u->cap_trees, u->ntrees + (uint32_t)trees,
                        sizeof(*u->trees));
    if (!rc)
        rc = array_grow((void **)&u->cats, &u->cap_cats, u->ncats + (uint32_t)cats,
                        sizeof(*u->cats));
    return rc;
}

/* c's entry in the open frame's trees[], added (with a reference) on the frame's first change
 * of c. Room was reserved. */
static struct undo_tree *undo_tree_of(struct shard *sh, struct shard_coll *c)
{
    struct frame_undo *u = &sh->undo[sh->wal.open];
    if (c->undo_seq == sh->frame_seq)
        return &u->trees[c->undo_idx];
    cs_assert(u->ntrees < u->cap_trees);
    struct undo_tree *e = &u->trees[u->ntrees];
    e->coll = c;
    e->snapped = false;
    c->refs++;
    c->undo_seq = sh->frame_seq;
    c->undo_idx = u->ntrees++;
    return e;
}

/* Snapshot c's tree for the open frame from now on (once per frame). */
static void undo_touch(struct shard *sh, struct shard_coll *c)
{
    if (!sh->undo_on)
        return;
    struct undo_tree *e = undo_tree_of(sh, c);
    if (e->snapped)
        return;
    uint64_t before = tree_bytes_before(c), count = c->tree.count;
    btree_snap_take(&c->tree, &e->snap);
    tree_bytes_after(sh, c, before, count);
    e->snapped = true;
}

/* Before the open frame's write of key in c: log what the key holds (see above), or snapshot
 * the tree. Fails (-ENOMEM) with nothing changed; the caller then does not write. */
static int undo_record(struct shard *sh, struct shard_coll *c, const void *key, size_t klen)
{
    if (!sh->undo_on)
        return 0;
    struct frame_undo *u = &sh->undo[sh->wal.open];
    struct undo_tree *e = undo_tree_of(sh, c);
    if (e->snapped)
        return 0; /* the snapshot covers every later change of c in this frame */
    const void *old = NULL;
    size_t olen = 0;
    bool had = btree_get(&c->tree, key, klen, &old, &olen) == 0;
    size_t need = klen + (had ? olen : 0); /* with the limit below, nbytes stays far from 4 GiB */
    if ((had && olen > UNDO_VALUE_MAX) || u->nbytes + need > UNDO_LOG_BYTES_MAX) {
        undo_touch(sh, c);
        return 0;
    }
    if (array_grow((void **)&u->recs, &u->cap_recs, u->nrecs + 1, sizeof(*u->recs)) ||
        array_grow((void **)&u->bytes, &u->cap_bytes, u->nbytes + (uint32_t)need, 1))
        return -ENOMEM;
    struct undo_rec *r = &u->recs[u->nrecs++];
    r->coll = c;
    r->off = u->nbytes;
    r->klen = (uint32_t)klen;
    r->vlen = had ? (uint32_t)olen : 0;
    r->had = had;
    memcpy(u->bytes + u->nbytes, key, klen);
    if (had && olen)
        memcpy(u->bytes + u->nbytes + klen, old, olen);
    u->nbytes += (uint32_t)need;
    return 0;
}

/* The write undo_record logged did not happen after all: forget it. */
static void undo_forget(struct shard *sh, struct shard_coll *c)
{
    if (!sh->undo_on)
        return;
    struct frame_undo *u = &sh->undo[sh->wal.open];
    if (u->nrecs && u->recs[u->nrecs - 1].coll == c && !u->trees[c->undo_idx].snapped) {
        u->nbytes = u->recs[u->nrecs - 1].off;
        u->nrecs--;
    }
}

static void undo_catalog(struct shard *sh, uint8_t op, struct shard_coll *c)
{
    if (!sh->undo_on)
        return;
    struct frame_undo *u = &sh->undo[sh->wal.open];
    cs_assert(u->ncats < u->cap_cats);
    u->cats[u->ncats].op = op;
    u->cats[u->ncats].coll = c;
    u->ncats++;
    c->refs++;
}

/* The frame is durable: drop what could have taken it back. */
static void undo_release(struct shard *sh, struct frame_undo *u)
{
    for (uint32_t i = 0; i < u->ntrees; i++) {
        struct shard_coll *c = u->trees[i].coll;
        if (u->trees[i].snapped) {
            uint64_t before = tree_bytes_before(c), count = c->tree.count;
            btree_snap_release(&c->tree, &u->trees[i].snap);
            tree_bytes_after(sh, c, before, count);
        }
        coll_unref(sh, c);
    }
    for (uint32_t i = 0; i < u->ncats; i++)
        coll_unref(sh, u->cats[i].coll);
    u->ntrees = 0;
    u->ncats = 0;
    u->nrecs = 0;
    u->nbytes = 0;
}

static void coll_relink(struct shard *sh, struct shard_coll *c)
{
    cs_assert(c->dropped);
    uint32_t b = name_bucket(c->name, c->name_len);
    c->next_name = sh->by_name[b];
    link_store(&sh->by_name[b], c);
    c->next_id = sh->by_id[c->id & (COLL_BUCKETS - 1)];
    sh->by_id[c->id & (COLL_BUCKETS - 1)] = c;
    __atomic_store_n(&c->dropped, false, __ATOMIC_RELEASE);
    coll_dirty(sh, c);
    c->refs++;
    sh->stats.collections++;
    sh->stats.records += c->tree.count;
}

/* The frame failed: put trees and catalog back as they were before it. Returns false when a
 * logged write could not be taken back (out of memory): the caller fences the shard. */
static bool undo_rollback(struct shard *sh, struct frame_undo *u)
{
    bool ok = true;
    for (uint32_t i = 0; i < u->ntrees; i++) {
        struct shard_coll *c = u->trees[i].coll;
        if (u->trees[i].snapped) {
            uint64_t before = tree_bytes_before(c), count = c->tree.count;
            btree_restore(&c->tree, &u->trees[i].snap);
            tree_bytes_after(sh, c, before, count);
        }
        coll_dirty(sh, c);
    }
    for (uint32_t i = u->nrecs; i-- > 0;) {
        const struct undo_rec *r = &u->recs[i];
        struct shard_coll *c = r->coll;
        const uint8_t *key = u->bytes + r->off;
        uint64_t before = tree_bytes_before(c), count = c->tree.count;
        int rc = r->had ? btree_put(&c->tree, key, r->klen, r->vlen ? key + r->klen : NULL, r->vlen,
                                    NULL)
                        : btree_del(&c->tree, key, r->klen);
        tree_bytes_after(sh, c, before, count);
        if (rc)
            ok = false;
    }
    for (uint32_t i = u->ncats; i-- > 0;) {
        struct shard_coll *c = u->cats[i].coll;
        if (u->cats[i].op == UNDO_CREATE && !c->dropped)
            coll_remove(sh, c);
        else if (u->cats[i].op == UNDO_DROP && c->dropped)
            coll_relink(sh, c);
    }
    undo_release(sh, u);
    return ok;
}

static void undo_free(struct frame_undo *u)
{
    free(u->trees);
    free(u->cats);
    free(u->recs);
    free(u->bytes);
    memset(u, 0, sizeof(*u));
}

/* ---- recovery ---- */

static int replay_op(struct shard *sh, const struct wal_rec *rec)
{
    struct shard_coll *c = coll_find_id(sh, rec->coll);
    if (!c)
        return CS_ECORRUPT;
    uint64_t before = tree_bytes_before(c), count = c->tree.count;
    int rc;
    if (rec->type == WAL_PUT)
        rc = btree_put(&c->tree, rec->key, rec->klen, rec->val, rec->vlen, NULL);
    else
        rc = btree_del(&c->tree, rec->key, rec->klen);
    tree_bytes_after(sh, c, before, count);
    coll_dirty(sh, c);
    return rc == CS_ENOTFOUND ? CS_ECORRUPT : rc;
}

static int replay_batch(struct shard *sh, const struct wal_rec *rec)
{
    size_t off = 0;
    for (uint32_t i = 0; off < rec->vlen && i < CS_BATCH_OPS_MAX; i++) {
        struct wal_rec sub;
        int rc = wal_rec_decode(rec->val, rec->vlen, &off, &sub);
        if (rc)
            return rc;
        if (sub.type != WAL_PUT && sub.type != WAL_DEL)
            return CS_ECORRUPT;
        rc = replay_op(sh, &sub);
        if (rc)
            return rc;
    }
    return off == rec->vlen ? 0 : CS_ECORRUPT;
}

static int replay_apply(void *arg, uint64_t lsn, const struct wal_rec *rec)
{
    struct shard *sh = arg;
    sh->applied_lsn = lsn;
    switch (rec->type) {
    case WAL_PUT:
    case WAL_DEL:
        return replay_op(sh, rec);
    case WAL_BATCH:
        return replay_batch(sh, rec);
    case WAL_COLL_CREATE:
        if (coll_find_id(sh, rec->coll) || coll_find(sh, rec->key, rec->klen))
            return CS_ECORRUPT;
        return coll_add(sh, rec->coll, rec->key, rec->klen) ? 0 : -ENOMEM;
    case WAL_COLL_DROP: {
        struct shard_coll *c = coll_find_id(sh, rec->coll);
        if (!c)
            return CS_ECORRUPT;
        coll_remove(sh, c);
        return 0;
    }
    }
    return CS_ECORRUPT;
}

/* ---- views ---- */

/* A new view of c's live tree (not yet visible to anyone). */
static struct shard_view *view_new(struct shard *sh, struct shard_coll *c)
{
    struct shard_view *v = cs_mem_alloc(sh->arena, sizeof(*v));
    if (!v)
        return NULL;
    memset(v, 0, sizeof(*v));
    uint64_t before = tree_bytes_before(c), count = c->tree.count;
    btree_snap_take(&c->tree, &v->snap);
    tree_bytes_after(sh, c, before, count);
    v->coll = c;
    v->sh = sh;
    c->refs++;
    return v;
}

/* Free a view no reader can reach any more (shard thread). */
static void view_release(struct shard *sh, struct shard_view *v)
{
    struct shard_coll *c = v->coll;
    uint64_t before = tree_bytes_before(c), count = c->tree.count;
    btree_snap_release(&c->tree, &v->snap);
    tree_bytes_after(sh, c, before, count);
    coll_unref(sh, c);
    cs_mem_free(v);
}

/* A grace period has passed since v was unpublished: no reader is inside it any more, and only
 * pins taken before can keep it. */
static void view_retired_cb(ck_epoch_entry_t *e)
{
    struct shard_view *v =
        (struct shard_view *)((char *)e - offsetof(struct shard_view, epoch_entry));
    struct shard *sh = v->sh;
    cs_epoch_grace();
    sh->retired--;
    if (__atomic_fetch_or(&v->pins, VIEW_RETIRED, __ATOMIC_ACQ_REL) == 0)
        view_release(sh, v);
}

/* Publish v (NULL: none) as c's view; the one it replaces is retired. */
static void view_install(struct shard *sh, struct shard_coll *c, struct shard_view *v)
{
    struct shard_view *old = c->view;
    __atomic_store_n(&c->view, v, __ATOMIC_RELEASE);
    if (v)
        sh->stats.views++;
    if (old) {
        sh->retired++;
        ck_epoch_call(sh->erec, &old->epoch_entry, view_retired_cb);
    }
}

/* Publish the live trees of every changed collection (async and none modes, or sync mode when
 * everything applied is durable). A view that cannot be allocated is published as none (readers
 * of that collection take the queue) and its collection stays dirty. */
static void views_publish_live(struct shard *sh)
{
    struct shard_coll *c = sh->dirty, *keep = NULL;
    while (c) {
        struct shard_coll *next = c->next_dirty;
        struct shard_view *v = c->dropped ? NULL : view_new(sh, c);
        view_install(sh, c, v);
        if (!v && !c->dropped) {
            c->next_dirty = keep;
            keep = c;
        } else {
            c->dirty = false;
            coll_unref(sh, c);
        }
        c = next;
    }
    sh->dirty = keep;
    __atomic_store_n(&sh->view_seq, sh->wseq, __ATOMIC_RELEASE);
}

/* Sync mode, a frame was just sealed: the trees hold exactly what it and the frames before it
 * logged. Take the views it publishes once durable. When even the list cannot be allocated the
 * capture is incomplete: the frame then publishes nothing and readers take the queue until a
 * later capture succeeds. */
static void views_capture(struct shard *sh, struct view_cap *k, bool wanted)
{
    cs_assert(k->n == 0);
    k->seq = sh->wseq;
    k->complete = false;
    /* Without readers only dropped collections are taken: their views (and trees) go once the
     * drop is durable all the same. */
    uint32_t n = 0;
    for (struct shard_coll *c = sh->dirty; c; c = c->next_dirty)
        n += wanted || c->dropped;
    if (array_grow((void **)&k->e, &k->cap, n, sizeof(*k->e)))
        return;
    struct shard_coll *c = sh->dirty, *keep = NULL;
    while (c) {
        struct shard_coll *next = c->next_dirty;
        if (!wanted && !c->dropped) {
            c->next_dirty = keep; /* stays dirty */
            keep = c;
            c = next;
            continue;
        }
        struct shard_view *v = c->dropped ? NULL : view_new(sh, c);
        k->e[k->n].coll = c;
        k->e[k->n++].view = v;
        if (!v && !c->dropped) {
            c->refs++; /* stays dirty, and is in the capture */
            c->next_dirty = keep;
            keep = c;
        } else {
            c->dirty = false; /* its dirty-list reference moves to the capture */
        }
        c = next;
    }
    sh->dirty = keep;
    k->complete = wanted;
}

/* The captured frame is durable: publish its views, then let its requests be acknowledged. */
static void views_publish_cap(struct shard *sh, struct view_cap *k)
{
    for (uint32_t i = 0; i < k->n; i++) {
        view_install(sh, k->e[i].coll, k->e[i].view);
        coll_unref(sh, k->e[i].coll);
    }
    k->n = 0;
    if (k->complete)
        __atomic_store_n(&sh->view_seq, k->seq, __ATOMIC_RELEASE);
    __atomic_store_n(&sh->ack_seq, k->seq, __ATOMIC_RELEASE);
}

/* Sync mode, sealing a frame: should it publish views? Only while readers use them. A view
 * shares the tree's nodes, so the frames after it copy every node they change (one 4 KiB node
 * per write of a small frame); with nobody reading, that was a fifth of the CPU of durable
 * writes. A reader that misses asks (view_wanted); then every frame publishes for
 * VIEW_HOLD_NS. A frame that publishes nothing is acknowledged all the same; readers miss
 * (and ask) until a later frame, or an idle loop (views_maybe_publish), publishes. */
static bool views_needed(struct shard *sh)
{
    uint64_t now = cs_now_ns();
    if (__atomic_load_n(&sh->view_wanted, __ATOMIC_RELAXED)) {
        __atomic_store_n(&sh->view_wanted, 0, __ATOMIC_RELAXED);
        sh->view_hold_ns = now + VIEW_HOLD_NS;
        return true;
    }
    return now < sh->view_hold_ns;
}

/* The captured frame failed: its views were never visible; its collections are dirty again. */
static void views_discard_cap(struct shard *sh, struct view_cap *k)
{
    for (uint32_t i = 0; i < k->n; i++) {
        struct shard_coll *c = k->e[i].coll;
        if (k->e[i].view)
            view_release(sh, k->e[i].view);
        if (c->dirty) {
            coll_unref(sh, c);
        } else {
            c->dirty = true; /* the capture's reference moves to the dirty list */
            c->next_dirty = sh->dirty;
            sh->dirty = c;
        }
    }
    k->n = 0;
}

/* A reader missed: publish now if what the trees hold may be shown. */
static void views_maybe_publish(struct shard *sh)
{
    if (!sh->dirty || !__atomic_load_n(&sh->view_wanted, __ATOMIC_RELAXED) || sh->fenced)
        return;
    if (sh->cfg.durability == SHARD_SYNC && sh->applied_lsn > sh->durable_lsn)
        return; /* the capture at the next seal publishes once durable */
    __atomic_store_n(&sh->view_wanted, 0, __ATOMIC_RELAXED);
    sh->view_hold_ns = cs_now_ns() + VIEW_HOLD_NS; /* sync: the next frames publish too */
    views_publish_live(sh);
}

/* Release views whose last pin was dropped after they were retired; run due deferrals. */
static void views_reclaim(struct shard *sh)
{
    if (__atomic_load_n(&sh->view_free.head, __ATOMIC_ACQUIRE)) {
        struct ck_stack_entry *e = ck_stack_batch_pop_upmc(&sh->view_free);
        while (e) {
            struct ck_stack_entry *next = e->next;
            view_release(sh,
                         (struct shard_view *)((char *)e - offsetof(struct shard_view, free_link)));
            e = next;
        }
    }
    if (sh->retired)
        ck_epoch_poll(sh->erec);
}

/* Private view for a cursor that missed the published one: already retired, one pin. */
static int exec_view_pin(struct shard *sh, struct shard_req *r)
{
    sh->stats.scans++;
    r->view = NULL;
    if (sh->fenced)
        return CS_EIO;
    struct shard_coll *c = coll_find(sh, r->coll, r->coll_len);
    if (!c)
        return 0;
    struct shard_view *v = view_new(sh, c);
    if (!v)
        return -ENOMEM;
    v->pins = VIEW_RETIRED | 1u;
    r->view = v;
    return 0;
}

/* ---- lock-free readers (application threads) ---- */

static struct shard_coll *coll_find_shared(struct shard *sh, const char *name, size_t len)
{
    struct shard_coll *c = __atomic_load_n(&sh->by_name[name_bucket(name, len)], __ATOMIC_ACQUIRE);
    for (; c; c = __atomic_load_n(&c->next_name, __ATOMIC_ACQUIRE))
        if (c->name_len == len && memcmp(c->name, name, len) == 0)
            return c;
    return NULL;
}

/* Inside an epoch section: the collection's view if it holds every acknowledged write. */
static struct shard_view *view_find(struct shard *sh, const char *coll, size_t coll_len)
{
    uint64_t acked = __atomic_load_n(&sh->ack_seq, __ATOMIC_ACQUIRE);
    if (__atomic_load_n(&sh->view_seq, __ATOMIC_ACQUIRE) < acked)
        return NULL;
    struct shard_coll *c = coll_find_shared(sh, coll, coll_len);
    if (!c || __atomic_load_n(&c->dropped, __ATOMIC_ACQUIRE))
        return NULL;
    return __atomic_load_n(&c->view, __ATOMIC_ACQUIRE);
}

static void view_want(struct shard *sh)
{
    if (!__atomic_load_n(&sh->view_wanted, __ATOMIC_RELAXED))
        __atomic_store_n(&sh->view_wanted, 1, __ATOMIC_RELAXED);
}

int shard_view_get(struct shard *sh, const char *coll, size_t coll_len, const void *key,
                   size_t klen, void **val, size_t *vlen)
{
    ck_epoch_record_t *rec = cs_epoch_reader();
    if (!rec)
        return SHARD_VIEW_MISS;
    cs_epoch_begin(rec);
    int rc = SHARD_VIEW_MISS;
    struct shard_view *v = view_find(sh, coll, coll_len);
    if (v) {
        const void *p;
        size_t n;
        rc = btree_snap_get(&v->snap, key, klen, &p, &n);
        if (rc == 0) {
            *val = NULL;
            *vlen = n;
            if (n && !(*val = cs_mem_alloc(0, n)))
                rc = -ENOMEM;
            else if (n)
                memcpy(*val, p, n);
        }
    }
    cs_epoch_end(rec);
    if (rc == SHARD_VIEW_MISS)
        view_want(sh);
    return rc;
}

int shard_view_pin(struct shard *sh, const char *coll, size_t coll_len, struct shard_view **view)
{
    ck_epoch_record_t *rec = cs_epoch_reader();
    if (!rec)
        return SHARD_VIEW_MISS;
    cs_epoch_begin(rec);
    struct shard_view *v = view_find(sh, coll, coll_len);
    if (v) /* inside the section v cannot be released, and after it the pin keeps it */
        __atomic_fetch_add(&v->pins, 1, __ATOMIC_ACQ_REL);
    cs_epoch_end(rec);
    if (!v) {
        view_want(sh);
        return SHARD_VIEW_MISS;
    }
    *view = v;
    return 0;
}

const struct btree_snap *shard_view_snap(const struct shard_view *v)
{
    return &v->snap;
}

void shard_view_unpin(struct shard *sh, struct shard_view *v)
{
    if (__atomic_fetch_sub(&v->pins, 1, __ATOMIC_ACQ_REL) != (VIEW_RETIRED | 1u))
        return;
    ck_stack_push_upmc(&sh->view_free, &v->free_link);
    shard_wake(sh);
}

/* ---- completion ---- */

static void req_complete(struct shard_req *r, int rc)
{
    r->rc = rc;
    r->done(r);
}

/* Complete now, or once everything applied so far is durable (sync mode). */
static void req_finish(struct shard *sh, struct shard_req *r, int rc)
{
    if (sh->cfg.durability != SHARD_SYNC || sh->applied_lsn <= sh->durable_lsn) {
        req_complete(r, rc);
        return;
    }
    r->rc = rc;
    r->wait_lsn = sh->applied_lsn;
    r->next = NULL;
    if (sh->pending_tail)
        sh->pending_tail->next = r;
    else
        sh->pending_head = r;
    sh->pending_tail = r;
}

static void pending_complete(struct shard *sh)
{
    struct shard_req *r = sh->pending_head;
    while (r && r->wait_lsn <= sh->durable_lsn) {
        struct shard_req *next = r->next;
        r->done(r);
        r = next;
    }
    sh->pending_head = r;
    if (!r)
        sh->pending_tail = NULL;
}

/* Everything waiting on durability fails with err; with read_only, the shard also stops taking
 * writes until it is reopened (a failed write or fdatasync is never retried). */
static void pending_fail(struct shard *sh, int err, bool read_only)
{
    if (read_only && !sh->io_error) {
        fprintf(stderr,
                "cstore: shard %u: a WAL write or fdatasync failed (%s); the shard is "
                "read-only until the database is reopened\n",
                sh->cfg.index, cs_strerror(sh->io_res ? sh->io_res : err));
        sh->io_error = err;
        sh->stats.io_error = err;
    }
    struct shard_req *r = sh->pending_head;
    while (r) {
        struct shard_req *next = r->next;
        if (r->out) {
            cs_mem_free(r->out);
            r->out = NULL;
        }
        if (r->op == SHARD_VIEW_PIN && r->view) {
            view_release(sh, r->view); /* it may hold what was just taken back */
            r->view = NULL;
        }
        req_complete(r, err);
        r = next;
    }
    sh->pending_head = sh->pending_tail = NULL;
}

/* ---- checkpoints ----
 * The shard snapshots every collection (O(1) each) and hands the snapshots to a writer thread,
 * which writes snap-<lsn>.tmp (see checkpoint.c) while the loop keeps serving. When the writer is
 * done and every LSN the checkpoint holds is durable, the shard publishes it (rename, folder
 * fsync: a few milliseconds on the loop, once per checkpoint) and removes the WAL segments it
 * covers. Requests that arrive while one is being written get the next one. */

static void *ckpt_main(void *arg)
{
    struct shard *sh = arg;
    int rc = ckpt_write(sh->ckpt); /* also kept in the job, read by ckpt_poll */
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
    free(job);
}

static int ckpt_start(struct shard *sh)
{
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
    sh->ckpt = job;
    atomic_store(&sh->ckpt_written, 0);
    int rc = -pthread_create(&sh->ckpt_thread, NULL, ckpt_main, sh);
    if (rc) {
        sh->ckpt = NULL;
        ckpt_release(sh, job);
        return rc;
    }
    sh->wal_bytes_since_ckpt = 0;
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
static void ckpt_poll(struct shard *sh)
{
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
        if (sh->ckpt_waiters && ckpt_start(sh) != 0) {
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
        rc = sh->io_error ? CS_EIO : ckpt_start(sh);
        if (rc) {
            ckpt_answer(sh, sh->ckpt_waiters, rc);
            sh->ckpt_waiters = NULL;
        }
    }
}

static void exec_checkpoint(struct shard *sh, struct shard_req *r)
{
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
    int rc = ckpt_start(sh);
    if (rc) {
        req_complete(r, rc);
        return;
    }
    r->next = NULL;
    sh->ckpt_waiters = r;
}

/* Recovery: collections and records of the newest checkpoint. */
static int load_coll(void *arg, uint32_t id, const char *name, size_t len)
{
    struct shard *sh = arg;
    if (coll_find_id(sh, id) || coll_find(sh, name, len))
        return CS_ECORRUPT;
    sh->load_coll = coll_add(sh, id, name, len);
    return sh->load_coll ? 0 : -ENOMEM;
}

static int load_rec(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    struct shard *sh = arg;
    struct shard_coll *c = sh->load_coll;
    uint64_t before = tree_bytes_before(c), count = c->tree.count;
    bool replaced = false;
    int rc = btree_put(&c->tree, key, klen, val, vlen, &replaced);
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
 *   2. When that checkpoint is published (ckpt_poll: renamed, and the WAL segments it covers
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

static void exec_backup(struct shard *sh, struct shard_req *r)
{
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
    int rc = array_grow((void **)&segs->lsn, &segs->cap, segs->count + 1, sizeof(uint64_t));
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
                     ? io_file_remove(sh->cfg.fault, dst)
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

/* ---- executing requests ---- */

static int write_allowed(struct shard *sh)
{
    if (sh->io_error)
        return CS_EIO;
    if (sh->cfg.memory_bytes_max && sh->tree_bytes >= sh->cfg.memory_bytes_max)
        return CS_EFULL;
    return 0;
}

/* Find the collection for a write, creating it (and logging its creation) when missing. The
 * caller reserved WAL room for a create record. */
static int coll_for_write(struct shard *sh, const char *name, size_t len, struct shard_coll **out)
{
    struct shard_coll *c = coll_find(sh, name, len);
    if (!c) {
        if (sh->stats.collections >= CS_COLLECTIONS_MAX)
            return CS_EFULL; /* checked before anything changed: the caller has nothing to undo */
        c = coll_add(sh, sh->next_coll_id, name, len);
        if (!c)
            return -ENOMEM;
        undo_catalog(sh, UNDO_CREATE, c);
        if (sh->wal_on) {
            struct wal_rec rec = {.type = WAL_COLL_CREATE, .coll = c->id, .key = name, .klen = len};
            sh->applied_lsn = wal_append(&sh->wal, &rec);
        }
    }
    *out = c;
    return 0;
}

static size_t create_rec_bytes(size_t name_len)
{
    return WAL_RECORD_HEADER_BYTES + name_len;
}

static int exec_put(struct shard *sh, struct shard_req *r)
{
    int rc = write_allowed(sh);
    if (rc)
        return rc;
    struct wal_rec rec = {
        .type = WAL_PUT, .key = r->key, .klen = r->klen, .val = r->val, .vlen = r->vlen};
    rc = undo_reserve(sh, 1, 1);
    if (!rc && sh->wal_on)
        rc = wal_reserve(&sh->wal, wal_rec_bytes(&rec) + create_rec_bytes(r->coll_len));
    if (rc)
        return rc;
    struct shard_coll *c;
    rc = coll_for_write(sh, r->coll, r->coll_len, &c);
    if (rc)
        return rc;
    rc = undo_record(sh, c, r->key, r->klen);
    if (rc)
        return rc;
    uint64_t before = tree_bytes_before(c), count = c->tree.count;
    rc = btree_put(&c->tree, r->key, r->klen, r->val, r->vlen, NULL);
    tree_bytes_after(sh, c, before, count);
    if (rc) {
        undo_forget(sh, c);
        return rc;
    }
    coll_dirty(sh, c);
    if (sh->wal_on) {
        rec.coll = c->id;
        sh->applied_lsn = wal_append(&sh->wal, &rec);
    }
    sh->stats.puts++;
    return 0;
}

static int exec_del(struct shard *sh, struct shard_req *r)
{
    int rc = sh->io_error ? CS_EIO : 0;
    if (rc)
        return rc;
    struct shard_coll *c = coll_find(sh, r->coll, r->coll_len);
    if (!c)
        return CS_ENOTFOUND;
    struct wal_rec rec = {.type = WAL_DEL, .coll = c->id, .key = r->key, .klen = r->klen};
    rc = undo_reserve(sh, 1, 0);
    if (!rc && sh->wal_on)
        rc = wal_reserve(&sh->wal, wal_rec_bytes(&rec));
    if (rc)
        return rc;
    rc = undo_record(sh, c, r->key, r->klen);
    if (rc)
        return rc;
    uint64_t before = tree_bytes_before(c), count = c->tree.count;
    rc = btree_del(&c->tree, r->key, r->klen);
    tree_bytes_after(sh, c, before, count);
    if (rc) {
        undo_forget(sh, c);
        return rc;
    }
    coll_dirty(sh, c);
    if (sh->wal_on)
        sh->applied_lsn = wal_append(&sh->wal, &rec);
    sh->stats.dels++;
    return 0;
}

static int exec_get(struct shard *sh, struct shard_req *r)
{
    sh->stats.gets++;
    if (sh->fenced)
        return CS_EIO;
    struct shard_coll *c = coll_find(sh, r->coll, r->coll_len);
    if (!c)
        return CS_ENOTFOUND;
    const void *v;
    size_t vlen;
    int rc = btree_get(&c->tree, r->key, r->klen, &v, &vlen);
    if (rc)
        return rc;
    r->out = NULL;
    r->out_len = vlen;
    if (vlen) {
        r->out = cs_mem_alloc(sh->arena, vlen);
        if (!r->out)
            return -ENOMEM;
        memcpy(r->out, v, vlen);
    }
    return 0;
}

/* ---- atomic batches ---- */

struct batch_state {
    struct shard_coll **coll;    /* per op: its collection (NULL: delete in a missing one) */
    bool *effective;             /* per op: changed the tree (so it is logged) */
    struct shard_coll **touched; /* distinct collections snapshotted for rollback */
    struct btree_snap *snaps;    /* their snapshots */
    size_t ntouched;             /* entries used */
};

static int batch_alloc(struct shard *sh, struct batch_state *b, size_t n)
{
    memset(b, 0, sizeof(*b));
    size_t bytes = n * (2 * sizeof(void *) + sizeof(bool) + sizeof(struct btree_snap));
    uint8_t *p = cs_mem_alloc(sh->arena, bytes);
    if (!p)
        return -ENOMEM;
    b->coll = (struct shard_coll **)p;
    b->touched = (struct shard_coll **)(p + n * sizeof(void *));
    b->snaps = (struct btree_snap *)(p + 2 * n * sizeof(void *));
    b->effective = (bool *)(p + 2 * n * sizeof(void *) + n * sizeof(struct btree_snap));
    return 0;
}

static void batch_snapshot(struct batch_state *b, struct shard_coll *c)
{
    for (size_t i = 0; i < b->ntouched; i++)
        if (b->touched[i] == c)
            return;
    btree_snap_take(&c->tree, &b->snaps[b->ntouched]);
    b->touched[b->ntouched++] = c;
}

/* Release the rollback snapshots; with rollback, first restore every touched tree. */
static void batch_finish(struct shard *sh, struct batch_state *b, bool rollback)
{
    for (size_t i = 0; i < b->ntouched; i++) {
        struct shard_coll *c = b->touched[i];
        uint64_t before = tree_bytes_before(c), count = c->tree.count;
        if (rollback)
            btree_restore(&c->tree, &b->snaps[i]);
        btree_snap_release(&c->tree, &b->snaps[i]);
        tree_bytes_after(sh, c, before, count);
    }
}

static size_t batch_wal_bytes(const struct shard_req *r)
{
    size_t bytes = WAL_RECORD_HEADER_BYTES;
    for (size_t i = 0; i < r->nops; i++) {
        const struct shard_batch_op *op = &r->ops[i];
        bytes += WAL_RECORD_HEADER_BYTES + op->klen + op->vlen + create_rec_bytes(op->coll_len);
    }
    return bytes;
}

static int batch_apply(struct shard *sh, struct shard_req *r, struct batch_state *b)
{
    for (size_t i = 0; i < r->nops; i++) {
        const struct shard_batch_op *op = &r->ops[i];
        struct shard_coll *c = coll_find(sh, op->coll, op->coll_len);
        int rc = 0;
        if (!c && op->type == WAL_PUT)
            rc = coll_for_write(sh, op->coll, op->coll_len, &c);
        if (rc)
            return rc;
        b->coll[i] = c;
        if (!c)
            continue;
        undo_touch(sh, c);
        batch_snapshot(b, c);
        uint64_t before = tree_bytes_before(c), count = c->tree.count;
        if (op->type == WAL_PUT)
            rc = btree_put(&c->tree, op->key, op->klen, op->val, op->vlen, NULL);
        else
            rc = btree_del(&c->tree, op->key, op->klen);
        tree_bytes_after(sh, c, before, count);
        coll_dirty(sh, c); /* also when the batch is then rolled back: harmless */
        if (rc && rc != CS_ENOTFOUND)
            return rc;
        b->effective[i] = rc == 0;
    }
    return 0;
}

static void batch_log(struct shard *sh, struct shard_req *r, const struct batch_state *b)
{
    bool any = false;
    for (size_t i = 0; i < r->nops && !any; i++)
        any = b->effective[i];
    if (!any || !sh->wal_on)
        return;
    wal_batch_begin(&sh->wal);
    for (size_t i = 0; i < r->nops; i++) {
        if (!b->effective[i])
            continue;
        const struct shard_batch_op *op = &r->ops[i];
        struct wal_rec rec = {.type = op->type,
                              .coll = b->coll[i]->id,
                              .key = op->key,
                              .klen = op->klen,
                              .val = op->val,
                              .vlen = op->vlen};
        wal_batch_add(&sh->wal, &rec);
    }
    sh->applied_lsn = wal_batch_end(&sh->wal);
}

static int exec_batch(struct shard *sh, struct shard_req *r)
{
    int rc = write_allowed(sh);
    if (rc)
        return rc;
    rc = undo_reserve(sh, r->nops, r->nops);
    if (!rc && sh->wal_on)
        rc = wal_reserve(&sh->wal, batch_wal_bytes(r));
    if (rc)
        return rc;
    struct batch_state b;
    rc = batch_alloc(sh, &b, r->nops);
    if (rc)
        return rc;
    rc = batch_apply(sh, r, &b);
    batch_finish(sh, &b, rc != 0);
    if (!rc) {
        batch_log(sh, r, &b);
        sh->stats.batches++;
    }
    cs_mem_free(b.coll);
    return rc;
}

/* ---- collections ---- */

static int exec_coll_create(struct shard *sh, struct shard_req *r)
{
    if (coll_find(sh, r->coll, r->coll_len))
        return CS_EEXIST;
    if (sh->io_error)
        return CS_EIO;
    int rc = undo_reserve(sh, 0, 1);
    if (!rc && sh->wal_on)
        rc = wal_reserve(&sh->wal, create_rec_bytes(r->coll_len));
    if (rc)
        return rc;
    struct shard_coll *c;
    return coll_for_write(sh, r->coll, r->coll_len, &c);
}

static int exec_coll_drop(struct shard *sh, struct shard_req *r)
{
    struct shard_coll *c = coll_find(sh, r->coll, r->coll_len);
    if (!c)
        return CS_ENOTFOUND;
    if (sh->io_error)
        return CS_EIO;
    struct wal_rec rec = {.type = WAL_COLL_DROP, .coll = c->id};
    int rc = undo_reserve(sh, 0, 1);
    if (!rc && sh->wal_on)
        rc = wal_reserve(&sh->wal, wal_rec_bytes(&rec));
    if (rc)
        return rc;
    if (sh->wal_on)
        sh->applied_lsn = wal_append(&sh->wal, &rec);
    undo_catalog(sh, UNDO_DROP, c);
    coll_remove(sh, c);
    return 0;
}

static int exec_coll_list(struct shard *sh, struct shard_req *r)
{
    size_t bytes = 1;
    uint32_t n = 0;
    for (unsigned b = 0; b < COLL_BUCKETS; b++)
        for (struct shard_coll *c = sh->by_name[b]; c; c = c->next_name) {
            bytes += c->name_len + 1u;
            n++;
        }
    char *out = cs_mem_alloc(sh->arena, bytes);
    if (!out)
        return -ENOMEM;
    size_t off = 0;
    for (unsigned b = 0; b < COLL_BUCKETS; b++)
        for (struct shard_coll *c = sh->by_name[b]; c; c = c->next_name) {
            memcpy(out + off, c->name, c->name_len + 1u);
            off += c->name_len + 1u;
        }
    r->out = out;
    r->out_len = off;
    r->out_count = n;
    return 0;
}

static void exec_stats(struct shard *sh, struct shard_req *r)
{
    sh->stats.wal_lsn = sh->applied_lsn;
    sh->stats.wal_durable_lsn = sh->durable_lsn;
    sh->stats.wal_segments = sh->wal_on ? sh->wal.segments : 0;
    sh->stats.tree_bytes = sh->tree_bytes;
    *r->stats = sh->stats;
}

/* Check every tree; on a problem, out holds its description. */
static int exec_check(struct shard *sh, struct shard_req *r)
{
    char msg[256];
    for (unsigned b = 0; b < COLL_BUCKETS; b++)
        for (struct shard_coll *c = sh->by_name[b]; c; c = c->next_name) {
            int rc = btree_check(&c->tree, msg, sizeof(msg));
            if (!rc)
                continue;
            size_t len = strlen(msg) + CS_NAME_MAX + 64;
            r->out = cs_mem_alloc(sh->arena, len);
            if (r->out)
                snprintf(r->out, len, "collection %s on shard %u: %s", c->name, sh->cfg.index, msg);
            return rc;
        }
    return 0;
}

/* Execute one request; completes it now or parks it until durable. */
static void exec(struct shard *sh, struct shard_req *r)
{
    int rc = 0;
    r->out = NULL;
    switch (r->op) {
    case SHARD_PUT:
        rc = exec_put(sh, r);
        break;
    case SHARD_GET:
        rc = exec_get(sh, r);
        break;
    case SHARD_DEL:
        rc = exec_del(sh, r);
        break;
    case SHARD_BATCH:
        rc = exec_batch(sh, r);
        break;
    case SHARD_COLL_CREATE:
        rc = exec_coll_create(sh, r);
        break;
    case SHARD_COLL_DROP:
        rc = exec_coll_drop(sh, r);
        break;
    case SHARD_COLL_LIST:
        rc = exec_coll_list(sh, r);
        break;
    case SHARD_VIEW_PIN:
        rc = exec_view_pin(sh, r);
        break;
    case SHARD_STATS:
        exec_stats(sh, r);
        req_complete(r, 0);
        return;
    case SHARD_CHECKPOINT:
        exec_checkpoint(sh, r);
        return;
    case SHARD_CHECK:
        req_complete(r, exec_check(sh, r));
        return;
    case SHARD_BACKUP:
        exec_backup(sh, r);
        return;
    case SHARD_STOP:
        sh->stopping = true;
        sh->stop_req = r;
        return;
    default:
        rc = CS_EINVAL;
        break;
    }
    /* async and none acknowledge at once: readers must see the change before the caller can */
    if (sh->cfg.durability != SHARD_SYNC && sh->wseq != sh->ack_seq)
        __atomic_store_n(&sh->ack_seq, sh->wseq, __ATOMIC_RELEASE);
    req_finish(sh, r, rc);
}

/* ---- WAL I/O ---- */

/* A frame could not be made durable. With ENOSPC in sync mode nothing of it reached the file:
 * its changes (and the open frame's, which build on them) are taken back, what waited on them
 * fails with -ENOSPC, and the shard stays writable, so that it works again once space is freed.
 * Any other error is fail-stop: the same rollback (readers must never see what is not durable),
 * then read-only until reopen. In async mode writes were acknowledged already: fail-stop. */
static void frame_failed(struct shard *sh, int err, bool in_flight)
{
    /* a checkpoint being written may hold what is now taken back; its LSNs will be reused */
    if (sh->ckpt && sh->ckpt->lsn > sh->durable_lsn)
        sh->ckpt_doomed = true;
    if (sh->undo_on) {
        bool undone = undo_rollback(sh, &sh->undo[sh->wal.open]);
        if (in_flight) {
            undone = undo_rollback(sh, &sh->undo[sh->wal.open ^ 1u]) && undone;
            views_discard_cap(sh, &sh->cap[sh->wal.open ^ 1u]);
        }
        sh->frame_seq++;
        sh->applied_lsn = sh->durable_lsn;
        if (!undone) {
            fprintf(stderr,
                    "cstore: shard %u: out of memory while taking back a failed WAL frame; "
                    "its live trees are fenced (reads of them fail) until the database is "
                    "reopened\n",
                    sh->cfg.index);
            sh->fenced = true;
            if (err == -ENOSPC)
                err = CS_EIO; /* the shard cannot stay writable */
        }
    }
    if (err == -ENOSPC && sh->undo_on) {
        if (in_flight)
            wal_rewind(&sh->wal, &sh->io);
        else
            wal_discard_open(&sh->wal);
        sh->stats.wal_enospc++;
        pending_fail(sh, -ENOSPC, false);
        return;
    }
    pending_fail(sh, err == -ENOSPC ? -ENOSPC : CS_EIO, true);
}

static void wal_submit(struct shard *sh)
{
    if (!sh->wal_on || sh->wal.in_flight || sh->io_error || wal_open_bytes(&sh->wal) == 0)
        return;
    uint32_t delay_us = sh->cfg.group_commit_delay_us;
    if (delay_us && !sh->delay_done && !sh->stopping &&
        wal_open_bytes(&sh->wal) < WAL_FRAME_SOFT_BYTES) {
        if (!sh->delay_armed) {
            sh->delay_ts.tv_sec = delay_us / 1000000u;
            sh->delay_ts.tv_nsec = (long long)(delay_us % 1000000u) * 1000;
            sh->delay_armed = io_ring_timeout(&sh->ring, &sh->delay_ts, TAG_DELAY) == 0;
        }
        return;
    }
    sh->delay_done = false;
    int rc = wal_seal(&sh->wal, sh->durable_lsn, &sh->io);
    if (rc) {
        frame_failed(sh, rc, false);
        return;
    }
    sh->frame_seq++;
    bool sync = sh->cfg.durability == SHARD_SYNC;
    if (sync)
        views_capture(sh, &sh->cap[sh->wal.open ^ 1u], views_needed(sh));
    rc = io_ring_write(&sh->ring, sh->io.fd, sh->io.buf, sh->io.len, sh->io.off, 0,
                       sh->io.frame_bytes, sync, TAG_WRITE);
    cs_assert(rc == 0); /* the ring has room: at most one frame is in flight */
    sh->io_wait = 1;    /* one write; with sync it carries RWF_DSYNC */
    sh->io_res = 0;
    sh->io_yield = sync && sh->cfg.yield_us && sh->io.records <= YIELD_RECORDS_MAX;
    if (sh->io_yield)
        sh->io_submit_ns = cs_now_ns();
}

static void wal_completed(struct shard *sh, uint64_t tag, int res)
{
    if (sh->io_wait == 0)
        return; /* given up on by ring_failed */
    if (tag == TAG_WRITE && res >= 0 && (size_t)res != sh->io.len)
        res = -EIO; /* a short write: the rest of the frame never reached the file */
    if (res < 0 && sh->io_res == 0 && res != -ECANCELED)
        sh->io_res = res;
    if (--sh->io_wait > 0)
        return;
    if (sh->io_res) {
        frame_failed(sh, sh->io_res, true);
        return;
    }
    wal_io_done(&sh->wal);
    if (sh->undo_on)
        undo_release(sh, &sh->undo[sh->wal.open ^ 1u]);
    sh->written_lsn = sh->io.last_lsn;
    sh->stats.wal_frames++;
    sh->stats.wal_records += sh->io.records;
    sh->stats.wal_bytes += sh->io.frame_bytes;
    sh->wal_bytes_since_ckpt += sh->io.frame_bytes;
    if (sh->cfg.checkpoint_wal_bytes && sh->wal_bytes_since_ckpt >= sh->cfg.checkpoint_wal_bytes &&
        !sh->ckpt && !sh->stopping && ckpt_start(sh) != 0)
        sh->wal_bytes_since_ckpt = 0; /* try again after as much WAL again */
    if (sh->cfg.durability == SHARD_SYNC) {
        sh->stats.wal_syncs++;
        sh->durable_lsn = sh->io.last_lsn;
        views_publish_cap(sh, &sh->cap[sh->wal.open ^ 1u]);
        pending_complete(sh);
    }
}

/* Async mode: make written frames durable every sync_interval_ms (and when stopping). */
static void sync_tick(struct shard *sh)
{
    if (sh->cfg.durability != SHARD_ASYNC || sh->io_error)
        return;
    bool dirty = sh->written_lsn > sh->durable_lsn;
    if (dirty && (sh->sync_due || sh->stopping) && !sh->fsync_in_flight && !sh->wal.in_flight) {
        if (io_ring_fsync(&sh->ring, sh->wal.fd, TAG_FSYNC) == 0) {
            sh->fsync_in_flight = true;
            sh->fsync_lsn = sh->written_lsn;
            sh->sync_due = false;
        }
    }
    if (dirty && !sh->sync_armed && !sh->sync_due && !sh->stopping) {
        uint32_t ms = sh->cfg.sync_interval_ms;
        sh->sync_ts.tv_sec = ms / 1000u;
        sh->sync_ts.tv_nsec = (long long)(ms % 1000u) * 1000000;
        sh->sync_armed = io_ring_timeout(&sh->ring, &sh->sync_ts, TAG_SYNC) == 0;
    }
}

static void handle_event(struct shard *sh, const struct io_event *ev)
{
    switch (ev->tag) {
    case TAG_WAKE:
        cs_assert(io_ring_read8(&sh->ring, sh->efd, &sh->efd_buf, TAG_WAKE) == 0);
        break;
    case TAG_WRITE:
        wal_completed(sh, ev->tag, ev->res);
        break;
    case TAG_DELAY:
        sh->delay_armed = false;
        sh->delay_done = true;
        break;
    case TAG_SYNC:
        sh->sync_armed = false;
        sh->sync_due = true;
        break;
    case TAG_EPOCH:
        sh->epoch_armed = false;
        break;
    case TAG_FSYNC:
        sh->fsync_in_flight = false;
        if (ev->res < 0) {
            sh->io_res = ev->res; /* the cause, for the message */
            pending_fail(sh, CS_EIO, true);
            break;
        }
        if (sh->io_error)
            break; /* given up on by ring_failed */
        sh->stats.wal_syncs++;
        sh->durable_lsn = sh->fsync_lsn;
        break;
    }
}

/* ---- the loop ---- */

/* Move everything in the inbox to the local queue, oldest first. */
static bool inbox_take(struct shard *sh)
{
    struct ck_stack_entry *e = ck_stack_batch_pop_upmc(&sh->inbox);
    struct shard_req *fifo = NULL;
    for (; e; e = e->next) {
        struct shard_req *r = (struct shard_req *)((char *)e - offsetof(struct shard_req, link));
        r->next = fifo;
        fifo = r;
    }
    sh->queue = fifo;
    return fifo != NULL;
}

static unsigned drain(struct shard *sh)
{
    unsigned n = 0;
    while (n < sh->cfg.batch_max && !sh->stopping) {
        if (sh->wal_on && wal_open_bytes(&sh->wal) >= WAL_FRAME_SOFT_BYTES)
            break;
        if (!sh->queue && !inbox_take(sh))
            break;
        struct shard_req *r = sh->queue;
        sh->queue = r->next;
        exec(sh, r);
        n++;
    }
    if (n)
        sh->stats.loops++;
    return n;
}

static bool work_left(struct shard *sh)
{
    return sh->io_wait > 0 || sh->fsync_in_flight || sh->pending_head || sh->ckpt ||
           (sh->wal_on && !sh->io_error && wal_open_bytes(&sh->wal) > 0) ||
           (sh->cfg.durability == SHARD_ASYNC && !sh->io_error &&
            sh->written_lsn > sh->durable_lsn);
}

/* Block in io_uring unless work may be waiting in the inbox (Dekker order with shard_submit). */
static unsigned wait_count(struct shard *sh, unsigned drained)
{
    if (drained == sh->cfg.batch_max)
        return 0;
    if (sh->wal_on && !sh->wal.in_flight && !sh->io_error && wal_open_bytes(&sh->wal) > 0 &&
        !sh->delay_armed)
        return 0;
    if (sh->stopping && !work_left(sh))
        return 0;
    /* Sync mode, a frame in flight: for up to yield_us after its submission the loop gives the
     * CPU away with sched_yield and looks again, instead of sleeping. Its CPU stays awake, so
     * neither the write's completion nor a submitter has to wake a halted CPU (on a virtual
     * machine that took a third of a lone writer's latency), and any runnable thread still gets
     * the CPU at once. The completion is reaped on the way back from the yield (task work).
     * Only for small frames (a few writers): with many writers the yielding shard kept its CPU
     * busy under the callers it had to share it with, and 64-writer throughput swung between
     * 0.7x and 1.2x of sleeping at once. */
    if (sh->io_yield && sh->wal.in_flight &&
        cs_now_ns() - sh->io_submit_ns < (uint64_t)sh->cfg.yield_us * 1000u) {
        sched_yield();
        return 0;
    }
    atomic_exchange(&sh->sleeping, 1);
    bool ckpt_ready = sh->ckpt && atomic_load(&sh->ckpt_written);
    if ((!sh->stopping &&
         (sh->queue || __atomic_load_n(&sh->inbox.head, __ATOMIC_ACQUIRE) != NULL)) ||
        ckpt_ready || __atomic_load_n(&sh->view_free.head, __ATOMIC_ACQUIRE) != NULL) {
        atomic_store(&sh->sleeping, 0);
        return 0;
    }
    /* retired views wait for readers to leave: look again soon rather than at the next request */
    if (sh->retired && !sh->epoch_armed) {
        sh->epoch_ts.tv_sec = 0;
        sh->epoch_ts.tv_nsec = EPOCH_POLL_NS;
        sh->epoch_armed = io_ring_timeout(&sh->ring, &sh->epoch_ts, TAG_EPOCH) == 0;
    }
    return 1;
}

/* Once the trees shrank by TRIM_BYTES since their peak (a large batch's or frame's old nodes
 * released, views retired, a collection dropped), hand the arena's free pages back to the
 * system: otherwise a bulk load that copies most of a tree once (copy-on-write for rollback)
 * keeps twice the tree's memory resident. Costs one madvise pass over what was freed. */
static void mem_trim(struct shard *sh)
{
    if (sh->tree_bytes_peak - sh->tree_bytes < TRIM_BYTES)
        return;
    cs_mem_arena_purge(sh->arena);
    sh->tree_bytes_peak = sh->tree_bytes;
}

/* io_uring itself failed (not one operation: the ring). Whatever is in flight may or may not
 * complete; the shard cannot count on it. Fail-stop as for a failed frame: the frames' writes are
 * taken back (readers never see them), everything waiting fails with CS_EIO, the shard turns
 * read-only, and the loop stops waiting for the lost completions so that close does not hang. A
 * completion that still arrives for them is ignored. */
static void ring_failed(struct shard *sh, int err)
{
    if (!sh->io_error)
        fprintf(stderr, "cstore: shard %u: io_uring failed (%s); the shard turns read-only\n",
                sh->cfg.index, cs_strerror(err));
    bool in_flight = sh->io_wait > 0;
    sh->io_wait = 0;
    sh->fsync_in_flight = false;
    if (sh->wal_on && (in_flight || wal_open_bytes(&sh->wal) > 0))
        frame_failed(sh, CS_EIO, in_flight);
    else
        pending_fail(sh, CS_EIO, true);
    sh->io_res = err; /* the cause */
}

/* After the loop: nothing executes again. Requests still queued, and any a submitter pushes from
 * now on, complete with CS_ECLOSED (shard_submit completes those itself once it sees closed). */
static void refuse_inbox(struct shard *sh)
{
    struct ck_stack_entry *e = ck_stack_batch_pop_upmc(&sh->inbox);
    for (uint64_t i = 0; e; i++) {
        cs_assert(i < UINT32_MAX);
        struct ck_stack_entry *next = e->next;
        struct shard_req *r = (struct shard_req *)((char *)e - offsetof(struct shard_req, link));
        req_complete(r, CS_ECLOSED);
        e = next;
    }
}

static void refuse_rest(struct shard *sh)
{
    atomic_store(&sh->sleeping, 0); /* nobody wakes a loop that is gone */
    atomic_store(&sh->closed, 1);   /* seq_cst: before the pop, against shard_submit's load */
    while (sh->queue) {
        struct shard_req *r = sh->queue;
        sh->queue = r->next;
        req_complete(r, CS_ECLOSED);
    }
    refuse_inbox(sh);
}

static void loop(struct shard *sh)
{
    struct io_event ev[EVENTS_MAX];
    for (;;) {
        unsigned drained = drain(sh);
        wal_submit(sh);
        sync_tick(sh);
        views_maybe_publish(sh);
        views_reclaim(sh);
        mem_trim(sh);
        if (sh->stopping && !work_left(sh))
            break;
        unsigned wait = wait_count(sh, drained);
        int n = io_ring_run(&sh->ring, wait, ev, EVENTS_MAX);
        atomic_store(&sh->sleeping, 0);
        if (n < 0) {
            ring_failed(sh, n);
            continue;
        }
        for (int i = 0; i < n; i++)
            handle_event(sh, &ev[i]);
        ckpt_poll(sh);
    }
}

/* ---- thread start and stop ---- */

static void shard_free_colls(struct shard *sh)
{
    for (unsigned b = 0; sh->by_name && b < COLL_BUCKETS; b++) {
        struct shard_coll *c = sh->by_name[b];
        while (c) {
            struct shard_coll *next = c->next_name;
            btree_destroy(&c->tree);
            cs_mem_free(c);
            c = next;
        }
    }
    free(sh->by_name);
    free(sh->by_id);
}

/* No reader is left (the database is closing): release every view and deferral. */
static void views_teardown(struct shard *sh)
{
    if (!sh->erec)
        return;
    for (int i = 0; i < 2; i++) {
        views_discard_cap(sh, &sh->cap[i]);
        free(sh->cap[i].e);
    }
    if (sh->by_name)
        for (unsigned b = 0; b < COLL_BUCKETS; b++)
            for (struct shard_coll *c = sh->by_name[b]; c; c = c->next_name)
                view_install(sh, c, NULL);
    while (sh->dirty) {
        struct shard_coll *c = sh->dirty;
        sh->dirty = c->next_dirty;
        c->dirty = false;
        if (c->view) /* a dropped collection is not in the catalog any more */
            view_install(sh, c, NULL);
        coll_unref(sh, c);
    }
    ck_epoch_barrier(sh->erec); /* runs the retirements (which may defer frees)... */
    views_reclaim(sh);
    ck_epoch_barrier(sh->erec); /* ...and those */
    cs_assert(sh->retired == 0);
    cs_epoch_record_free(sh->erec);
    sh->erec = NULL;
}

static int shard_setup(struct shard *sh)
{
    if (sh->cfg.cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(sh->cfg.cpu, &set);
        int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
        if (rc)
            return -rc;
    }
    int rc = cs_mem_arena_create(&sh->arena);
    if (rc)
        return rc;
    sh->erec = cs_epoch_record_new();
    if (!sh->erec)
        return -ENOMEM;
    sh->by_name = calloc(COLL_BUCKETS, sizeof(*sh->by_name));
    sh->by_id = calloc(COLL_BUCKETS, sizeof(*sh->by_id));
    if (!sh->by_name || !sh->by_id)
        return -ENOMEM;
    rc = io_ring_init(&sh->ring, sh->cfg.fault);
    if (rc)
        return rc;
    /* durability=none still loads what an earlier open stored, reading only: it writes nothing,
     * so the folder keeps what it had and the in-memory changes end with the process. */
    bool in_memory = sh->cfg.durability == SHARD_NONE;
    if (in_memory)
        sh->cfg.open_mode = WAL_OPEN_VERIFY;
    struct wal_config wc = {
        .dir = sh->dir,
        .shard = sh->cfg.index,
        .arena = sh->arena,
        .segment_bytes = sh->cfg.wal_segment_bytes,
        .compress_bytes = sh->cfg.wal_compress_bytes,
        .fault = sh->cfg.fault,
        .mode = sh->cfg.open_mode,
    };
    struct wal_recovery info;
    memset(&info, 0, sizeof(info));
    uint64_t t0 = cs_now_ns();
    uint32_t next_id = 0;
    bool salvaged = false;
    unsigned ckpt_flags = sh->cfg.open_mode == WAL_OPEN_SALVAGE ? CKPT_LOAD_SALVAGE : 0u;
    if (sh->cfg.open_mode == WAL_OPEN_VERIFY)
        ckpt_flags |= CKPT_LOAD_READONLY;
    rc = ckpt_load(sh->cfg.fault, sh->dir, sh->cfg.index, load_coll, load_rec, sh, &sh->ckpt_lsn,
                   &next_id, ckpt_flags, &salvaged, info.message, sizeof(info.message));
    snprintf(sh->start_msg, sizeof(sh->start_msg), "%s", info.message);
    if (rc)
        return rc;
    if (sh->start_msg[0]) /* salvaged, or an older checkpoint loaded */
        fprintf(stderr, "cstore: shard %u: %s\n", sh->cfg.index, sh->start_msg);
    sh->ckpt_salvaged = salvaged;
    memset(info.message, 0, sizeof(info.message));
    if (next_id > sh->next_coll_id)
        sh->next_coll_id = next_id;
    sh->stats.checkpoint_lsn = sh->ckpt_lsn;
    wc.base_lsn = sh->ckpt_lsn;
    rc = wal_open(&sh->wal, &wc, replay_apply, sh, &info);
    sh->stats.recovery_us = (cs_now_ns() - t0) / 1000u;
    if (info.message[0]) {
        size_t n = strlen(sh->start_msg);
        snprintf(sh->start_msg + n, sizeof(sh->start_msg) - n, "%s%s", n ? "; " : "", info.message);
    }
    if (info.torn_bytes && !rc)
        fprintf(stderr, "cstore: shard %u: %s (%" PRIu64 " bytes)\n", sh->cfg.index, info.message,
                info.torn_bytes);
    if (rc)
        return rc;
    if (in_memory)
        wal_close(&sh->wal);
    sh->wal_on = !in_memory;
    sh->undo_on = sh->cfg.durability == SHARD_SYNC;
    sh->frame_seq = 1;
    sh->stats.recovered_records = info.records;
    sh->stats.recovery_torn_bytes = info.torn_bytes;
    sh->stats.recovery_salvaged_bytes = info.salvaged_bytes;
    if (info.salvaged_bytes || info.salvaged_segments)
        fprintf(stderr, "cstore: shard %u: %s\n", sh->cfg.index, info.message);
    sh->applied_lsn = sh->durable_lsn = sh->written_lsn = cs_max_u64(info.last_lsn, sh->ckpt_lsn);
    views_publish_live(sh); /* what was recovered is durable */
    __atomic_store_n(&sh->ack_seq, sh->wseq, __ATOMIC_RELEASE);
    return 0;
}

static void shard_teardown(struct shard *sh)
{
    if (sh->wal_on) {
        if (!sh->io_error && sh->written_lsn > sh->durable_lsn &&
            io_file_sync(sh->cfg.fault, sh->wal.fd))
            sh->io_error = CS_EIO;
        wal_close(&sh->wal);
    }
    if (sh->ring.uring.ring_fd > 0)
        io_ring_exit(&sh->ring);
    for (int i = 0; i < 2; i++) {
        undo_release(sh, &sh->undo[i]);
        undo_free(&sh->undo[i]);
    }
    views_teardown(sh);
    shard_free_colls(sh);
    cs_mem_arena_release(sh->arena);
    sh->arena = 0;
}

static void *shard_main(void *arg)
{
    struct shard *sh = arg;
    int rc = shard_setup(sh);
    sh->start_rc = rc;
    sh->stats.shard = sh->cfg.index;
    sh->stats.cpu = sh->cfg.cpu;
    if (!rc)
        cs_assert(io_ring_read8(&sh->ring, sh->efd, &sh->efd_buf, TAG_WAKE) == 0);
    sem_post(&sh->start_sem);
    if (rc) {
        shard_teardown(sh);
        return NULL;
    }
    if (sh->ckpt_salvaged && ckpt_start(sh) != 0)
        fprintf(stderr,
                "cstore: shard %u: could not start the checkpoint that replaces the "
                "salvaged one\n",
                sh->cfg.index);
    io_fault_thread_enter(sh->cfg.fault); /* tests: the plan's allocation failures, if any */
    loop(sh);
    io_fault_thread_leave(sh->cfg.fault);
    refuse_rest(sh);
    struct shard_req *stop = sh->stop_req;
    shard_teardown(sh);
    stop->rc = sh->io_error;
    stop->done(stop);
    return NULL;
}

int shard_launch(struct shard *sh, const struct shard_config *cfg)
{
    cs_assert(cfg->batch_max > 0);
    memset(sh, 0, sizeof(*sh));
    sh->efd = -1;
    sh->cfg = *cfg;
    if (snprintf(sh->dir, sizeof(sh->dir), "%s", cfg->dir) >= (int)sizeof(sh->dir))
        return -ENAMETOOLONG;
    sh->cfg.dir = sh->dir;
    ck_stack_init(&sh->inbox);
    int rc = 0;
    sh->efd = eventfd(0, EFD_CLOEXEC);
    if (sh->efd < 0)
        rc = -errno;
    if (!rc && sem_init(&sh->start_sem, 0, 0) != 0)
        rc = -errno;
    if (!rc) {
        rc = -pthread_create(&sh->thread, NULL, shard_main, sh);
        if (rc)
            sem_destroy(&sh->start_sem);
    }
    if (rc) {
        if (sh->efd >= 0)
            close(sh->efd);
        return rc;
    }
    sh->launched = true;
    return 0;
}

int shard_await(struct shard *sh)
{
    cs_assert(sh->launched);
    while (sem_wait(&sh->start_sem) != 0 && errno == EINTR)
        ;
    sem_destroy(&sh->start_sem);
    sh->launched = false;
    int rc = sh->start_rc;
    if (rc) {
        pthread_join(sh->thread, NULL);
        close(sh->efd);
        return rc;
    }
    sh->started = true;
    return 0;
}

void shard_submit(struct shard *sh, struct shard_req *r)
{
    ck_stack_push_upmc(&sh->inbox, &r->link);
    /* Dekker with refuse_rest: either its pop sees this push, or this load sees closed */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&sh->closed)) {
        refuse_inbox(sh);
        return;
    }
    shard_wake(sh);
}

static void shard_wake(struct shard *sh)
{
    /* Both sides exchange the same flag, so the exchanges are totally ordered: if the shard's
     * came first, this one sees 1 and wakes it; if this one came first, the shard's exchange
     * reads the 0 written here and so sees the work published before it. */
    if (atomic_exchange(&sh->sleeping, 0)) {
        uint64_t one = 1;
        ssize_t n = write(sh->efd, &one, sizeof(one));
        cs_assert(n == (ssize_t)sizeof(one));
    }
}

static void stop_done(struct shard_req *r)
{
    (void)r;
}

int shard_stop(struct shard *sh)
{
    if (!sh->started)
        return 0;
    struct shard_req r = {.op = SHARD_STOP, .done = stop_done};
    shard_submit(sh, &r);
    pthread_join(sh->thread, NULL);
    close(sh->efd);
    sh->started = false;
    return r.rc;
}
