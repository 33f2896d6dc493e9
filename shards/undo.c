/* The frame undo log of one shard.
 *
 * In sync mode a write changes the trees before its frame is durable. If that frame cannot be
 * written (ENOSPC, or an I/O error), what it changed is taken back, so that no reader ever sees
 * it. undo[wal.open] belongs to the frame being filled, undo[wal.open ^ 1] to the frame in
 * flight. A durable frame releases its undo; a failed one rolls it back.
 *
 * A put or delete is undone logically: the tree write hands undo_log_old what the key held (or
 * that it held nothing) at the leaf it found, before it changes anything (btree_put_old,
 * btree_del_old: the write's own descent, no lookup of its own); the key and that old value are
 * copied into the frame's log (with the old record's expiry), and rolling back puts the old
 * values back with their expiries, newest first. This
 * costs a copy of about one record per write. A snapshot of the tree (O(1), but every node the
 * frame then changes is copied first: one 4 KiB node per write of a small frame) is taken instead,
 * from that point of the frame on, when a write replaces a large value (a blob: copying it could be
 * costly; a snapshot shares it), when the frame's log passes UNDO_LOG_BYTES_MAX, and for atomic
 * batches (which snapshot the tree for their own rollback anyway). Rolling back a tree with a
 * snapshot restores the snapshot first (the state at that point) and then undoes the logged writes
 * before it.
 *
 * Putting an old value back may need memory (a split); if that fails the live tree holds
 * writes that are not durable and cannot be taken back: the shard is then fenced (read-only,
 * and reads of its live trees fail with CS_EIO; the published views hold only durable states
 * and stay readable) until the database is reopened and recovers from its log. Catalog
 * changes are logged and undone after the trees. */
#include "shards/shard_int.h"

/* Grow *arr (malloc memory) to hold need elements of elem bytes, doubling. */
int shard_array_grow(void **arr, uint32_t *cap, uint32_t need, size_t elem)
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
 * writes' log entries are grown by undo_log_old, before the tree changes). */
int undo_reserve(struct shard *sh, size_t trees, size_t cats)
{
    SHARD_OWNED(sh);
    if (!sh->undo_on)
        return 0;
    struct frame_undo *u = &sh->undo[sh->wal.open];
    int rc = shard_array_grow((void **)&u->trees, &u->cap_trees, u->ntrees + (uint32_t)trees,
                              sizeof(*u->trees));
    if (!rc)
        rc = shard_array_grow((void **)&u->cats, &u->cap_cats, u->ncats + (uint32_t)cats,
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
void undo_touch(struct shard *sh, struct shard_coll *c)
{
    SHARD_OWNED(sh);
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

/* Log the open frame's write of key in c with what the key held (had, old, olen), or snapshot
 * c's tree instead (see above). Fails (-ENOMEM) with nothing logged. */
static int undo_log(struct shard *sh, struct shard_coll *c, const void *key, size_t klen, bool had,
                    const void *old, size_t olen, uint64_t expire_ms)
{
    cs_assert(had || olen == 0);
    struct frame_undo *u = &sh->undo[sh->wal.open];
    struct undo_tree *e = undo_tree_of(sh, c);
    if (e->snapped)
        return 0;              /* the snapshot covers every later change of c in this frame */
    size_t need = klen + olen; /* with the limit below, nbytes stays far from 4 GiB */
    if (olen > UNDO_VALUE_MAX || u->nbytes + need > UNDO_LOG_BYTES_MAX) {
        undo_touch(sh, c);
        return 0;
    }
    if (shard_array_grow((void **)&u->recs, &u->cap_recs, u->nrecs + 1, sizeof(*u->recs)) ||
        shard_array_grow((void **)&u->bytes, &u->cap_bytes, u->nbytes + (uint32_t)need, 1))
        return -ENOMEM;
    struct undo_rec *r = &u->recs[u->nrecs++];
    r->coll = c;
    r->off = u->nbytes;
    r->klen = (uint32_t)klen;
    r->vlen = (uint32_t)olen;
    r->had = had;
    r->expire_ms = expire_ms;
    memcpy(u->bytes + u->nbytes, key, klen);
    if (olen)
        memcpy(u->bytes + u->nbytes + klen, old, olen);
    u->nbytes += (uint32_t)need;
    return 0;
}

/* The tree hands what the key held to this callback of the open frame's write (btree_put_old,
 * btree_del_old with arg a struct undo_write: one descent), before it changes anything: log it
 * (undo_log). Fails (-ENOMEM) with nothing logged; the tree then cancels the write. Once this
 * returns 0 the write cannot fail, so there is nothing to forget. */
int undo_log_old(void *arg, bool had, const void *old, size_t olen, uint64_t expire_ms)
{
    struct undo_write *w = arg;
    SHARD_OWNED(w->sh);
    cs_assert(w->sh->undo_on);
    w->old_expire_ms = expire_ms;
    return undo_log(w->sh, w->coll, w->key, w->klen, had, old, olen, expire_ms);
}

int undo_del_old(void *arg, bool had, const void *old, size_t olen, uint64_t expire_ms)
{
    struct undo_write *w = arg;
    w->old_expire_ms = expire_ms;
    if (!w->sh->undo_on)
        return 0;
    return undo_log_old(arg, had, old, olen, expire_ms);
}

void undo_catalog(struct shard *sh, uint8_t op, struct shard_coll *c)
{
    SHARD_OWNED(sh);
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
void undo_release(struct shard *sh, struct frame_undo *u)
{
    SHARD_OWNED(sh);
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
    c->next_all = sh->colls;
    link_store(&sh->colls, c);
    __atomic_store_n(&c->dropped, false, __ATOMIC_RELEASE);
    coll_dirty(sh, c);
    c->refs++;
    sh->stats.collections++;
    sh->stats.records += c->tree.count;
}

/* The frame failed: put trees and catalog back as they were before it. Returns false when a
 * logged write could not be taken back (out of memory): the caller fences the shard. */
bool undo_rollback(struct shard *sh, struct frame_undo *u)
{
    SHARD_OWNED(sh);
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
        int rc = r->had ? btree_put_exp(&c->tree, key, r->klen, r->vlen ? key + r->klen : NULL,
                                        r->vlen, r->expire_ms, NULL)
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

void undo_free(struct frame_undo *u)
{
    free(u->trees);
    free(u->cats);
    free(u->recs);
    free(u->bytes);
    memset(u, 0, sizeof(*u));
}
