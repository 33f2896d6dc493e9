/* Views: published snapshots of a shard's collections, read lock-free.
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
 * through the view_free stack. The catalog's hash chains and its list of every collection are
 * read lock-free too (release stores on link, and a dropped collection's memory is freed after a
 * grace period).
 * Several collections at one moment (shard_view_pin_all, read-only transactions): a publish
 * changes views one collection at a time, so it makes pub_gen odd while it does (a sequence
 * lock); a reader pins every view, then checks that pub_gen did not move and that view_seq still
 * covers ack_seq (no write acknowledged beyond the views), else unpins and tries again.
 */
#include "shards/shard_int.h"

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
void view_release(struct shard *sh, struct shard_view *v)
{
    SHARD_OWNED(sh);
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
void view_install(struct shard *sh, struct shard_coll *c, struct shard_view *v)
{
    SHARD_OWNED(sh);
    struct shard_view *old = c->view;
    __atomic_store_n(&c->view, v, __ATOMIC_RELEASE);
    if (v)
        sh->stats.views++;
    if (old) {
        sh->retired++;
        ck_epoch_call(sh->erec, &old->epoch_entry, view_retired_cb);
    }
}

/* A publish changes several collections' views and then view_seq: pub_gen is odd meanwhile, so
 * that shard_view_pin_all can tell it pinned views of one moment (a sequence lock). */
static void publish_begin(struct shard *sh)
{
    /* odd before any view changes: each view is stored with release, so a reader that loads a
     * new view (acquire) sees this store too when it loads pub_gen again */
    __atomic_store_n(&sh->pub_gen, sh->pub_gen + 1, __ATOMIC_RELAXED);
}

static void publish_end(struct shard *sh)
{
    __atomic_store_n(&sh->pub_gen, sh->pub_gen + 1, __ATOMIC_RELEASE); /* after them */
}

/* Publish the live trees of every changed collection (async and none modes, or sync mode when
 * everything applied is durable). A view that cannot be allocated is published as none (readers
 * of that collection take the queue) and its collection stays dirty. */
void views_publish_live(struct shard *sh)
{
    SHARD_OWNED(sh);
    publish_begin(sh);
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
    publish_end(sh);
}

/* Sync mode, a frame was just sealed: the trees hold exactly what it and the frames before it
 * logged. Take the views it publishes once durable. When even the list cannot be allocated the
 * capture is incomplete: the frame then publishes nothing and readers take the queue until a
 * later capture succeeds. */
void views_capture(struct shard *sh, struct view_cap *k, bool wanted)
{
    SHARD_OWNED(sh);
    cs_assert(k->n == 0);
    k->seq = sh->wseq;
    k->complete = false;
    /* Without readers only dropped collections are taken: their views (and trees) go once the
     * drop is durable all the same. */
    uint32_t n = 0;
    for (struct shard_coll *c = sh->dirty; c; c = c->next_dirty)
        n += wanted || c->dropped;
    if (shard_array_grow((void **)&k->e, &k->cap, n, sizeof(*k->e)))
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
void views_publish_cap(struct shard *sh, struct view_cap *k)
{
    SHARD_OWNED(sh);
    publish_begin(sh);
    for (uint32_t i = 0; i < k->n; i++) {
        view_install(sh, k->e[i].coll, k->e[i].view);
        coll_unref(sh, k->e[i].coll);
    }
    k->n = 0;
    if (k->complete && k->seq > sh->view_seq) /* a live publish may have gone past it */
        __atomic_store_n(&sh->view_seq, k->seq, __ATOMIC_RELEASE);
    /* never backwards: a transaction's install acknowledges before its frame is sealed (txn.c) */
    if (k->seq > sh->ack_seq)
        __atomic_store_n(&sh->ack_seq, k->seq, __ATOMIC_RELEASE);
    publish_end(sh);
}

/* Sync mode, sealing a frame: should it publish views? Only while readers use them. A view
 * shares the tree's nodes, so the frames after it copy every node they change (one 4 KiB node
 * per write of a small frame); with nobody reading, that was a fifth of the CPU of durable
 * writes. A reader that misses asks (view_wanted); then every frame publishes for
 * VIEW_HOLD_NS. A frame that publishes nothing is acknowledged all the same; readers miss
 * (and ask) until a later frame, or an idle loop (views_maybe_publish), publishes. */
bool views_needed(struct shard *sh)
{
    SHARD_OWNED(sh);
    uint64_t now = cs_now_ns();
    if (__atomic_load_n(&sh->view_wanted, __ATOMIC_RELAXED)) {
        __atomic_store_n(&sh->view_wanted, 0, __ATOMIC_RELAXED);
        sh->view_hold_ns = now + VIEW_HOLD_NS;
        return true;
    }
    return now < sh->view_hold_ns;
}

/* The captured frame failed: its views were never visible; its collections are dirty again. */
void views_discard_cap(struct shard *sh, struct view_cap *k)
{
    SHARD_OWNED(sh);
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

/* Readers missed (or, in sync mode, used views in the last VIEW_HOLD_NS): publish now if what
 * the trees hold may be shown. In sync mode that is when every record that changed what a reader
 * sees is durable (data_lsn): the frame in flight may still hold PREPAREs and outcome records,
 * and a commit's installs (durable through its PREPAREs), so readers see an install at once
 * instead of after the next frame. A capture that frame holds is then older than the live trees:
 * its collections are taken back to the dirty list and published now, and its views are
 * dropped (views_publish_cap never moves view_seq backwards). */
void views_maybe_publish(struct shard *sh)
{
    SHARD_OWNED(sh);
    bool sync = sh->cfg.durability == SHARD_SYNC;
    struct view_cap *k = sync && sh->wal.in_flight ? &sh->cap[sh->wal.open ^ 1u] : NULL;
    if ((!sh->dirty && (!k || !k->n)) || sh->fenced)
        return;
    bool wanted = __atomic_load_n(&sh->view_wanted, __ATOMIC_RELAXED);
    if (!wanted && (!sync || cs_now_ns() >= sh->view_hold_ns))
        return;
    if (sync && sh->data_lsn > sh->durable_lsn)
        return; /* the capture at the next seal publishes once durable */
    if (k) {
        views_discard_cap(sh, k);
        k->complete = false;
    }
    if (wanted) {
        __atomic_store_n(&sh->view_wanted, 0, __ATOMIC_RELAXED);
        sh->view_hold_ns = cs_now_ns() + VIEW_HOLD_NS; /* sync: the next frames publish too */
    }
    views_publish_live(sh);
}

/* Release views whose last pin was dropped after they were retired; run due deferrals. */
void views_reclaim(struct shard *sh)
{
    SHARD_OWNED(sh);
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
int exec_view_pin(struct shard *sh, struct shard_req *r)
{
    SHARD_OWNED(sh);
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

/* Private views of every collection, for a reader that missed the published ones: one step of
 * the shard thread, so they hold the same moment. */
int exec_view_pin_all(struct shard *sh, struct shard_req *r)
{
    SHARD_OWNED(sh);
    sh->stats.scans++;
    r->out = NULL;
    r->out_count = 0;
    if (sh->fenced)
        return CS_EIO;
    uint32_t n = 0;
    for (struct shard_coll *c = sh->colls; c; c = c->next_all)
        n++;
    struct shard_view **out = cs_mem_alloc(sh->arena, (n ? n : 1) * sizeof(*out));
    if (!out)
        return -ENOMEM;
    r->out = out;
    for (struct shard_coll *c = sh->colls; c; c = c->next_all) {
        struct shard_view *v = view_new(sh, c);
        if (!v) {
            views_release_all(sh, r);
            return -ENOMEM;
        }
        v->pins = VIEW_RETIRED | 1u;
        out[r->out_count++] = v;
    }
    return 0;
}

void views_release_all(struct shard *sh, struct shard_req *r)
{
    SHARD_OWNED(sh);
    struct shard_view **v = r->out;
    for (uint32_t i = 0; i < r->out_count; i++)
        view_release(sh, v[i]);
    cs_mem_free(r->out);
    r->out = NULL;
    r->out_count = 0;
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

/* Inside an epoch section: the collection's view if it holds every acknowledged write.
 * Intents of prepared transactions are not read from views: a committed transaction's install
 * may not have reached them (txn.c). A get (key not NULL) misses only when its key's intent slot
 * counts some; a pin (key NULL: a cursor reads every key) when the collection holds any. The
 * counts are loaded before the freshness check: an install stores ack_seq before it drops them,
 * so a reader that sees a count fall also sees the view stale. */
static struct shard_view *view_find(struct shard *sh, const char *coll, size_t coll_len,
                                    const void *key, size_t klen)
{
    struct shard_coll *c = coll_find_shared(sh, coll, coll_len);
    if (c && __atomic_load_n(&c->intents, __ATOMIC_ACQUIRE)) {
        if (!key)
            return NULL;
        uint32_t slot = intent_slot(txn_key_hash(coll, coll_len, key, klen));
        if (__atomic_load_n(&sh->intent_keys[slot], __ATOMIC_ACQUIRE))
            return NULL;
    }
    uint64_t acked = __atomic_load_n(&sh->ack_seq, __ATOMIC_ACQUIRE);
    if (__atomic_load_n(&sh->view_seq, __ATOMIC_ACQUIRE) < acked)
        return NULL;
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
    struct shard_view *v = view_find(sh, coll, coll_len, key, klen);
    if (v) {
        const void *p;
        size_t n;
        uint64_t exp;
        rc = btree_snap_get_exp(&v->snap, key, klen, &p, &n, &exp);
        if (rc == 0 && cs_expired(exp))
            rc = CS_ENOTFOUND; /* expired: absent to every reader */
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
    struct shard_view *v = view_find(sh, coll, coll_len, NULL, 0);
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

#define PIN_ALL_TRIES 4u /* shard_view_pin_all: attempts before it misses */

/* One attempt, inside an epoch section: pins every view into vs (room for cap) and sets *n; false
 * (nothing left pinned) when a view is missing or not fresh, or a publish came between. */
static bool pin_all_once(struct shard *sh, struct shard_view **vs, uint32_t cap, uint32_t *n)
{
    *n = 0;
    uint64_t gen = __atomic_load_n(&sh->pub_gen, __ATOMIC_ACQUIRE);
    if (gen & 1u)
        return false;
    bool ok = true;
    for (struct shard_coll *c = __atomic_load_n(&sh->colls, __ATOMIC_ACQUIRE); c && ok;
         c = __atomic_load_n(&c->next_all, __ATOMIC_ACQUIRE)) {
        if (__atomic_load_n(&c->dropped, __ATOMIC_ACQUIRE))
            continue;
        /* as view_find for a pin: intents or staleness miss */
        struct shard_view *v = *n < cap && !__atomic_load_n(&c->intents, __ATOMIC_ACQUIRE)
                                   ? __atomic_load_n(&c->view, __ATOMIC_ACQUIRE)
                                   : NULL;
        if (!v) {
            ok = false;
            break;
        }
        __atomic_fetch_add(&v->pins, 1, __ATOMIC_ACQ_REL);
        vs[(*n)++] = v;
    }
    /* every view loaded above (acquire) comes before these loads: the same generation, and
     * nothing acknowledged beyond what the views hold, means one moment */
    uint64_t acked = __atomic_load_n(&sh->ack_seq, __ATOMIC_ACQUIRE);
    ok = ok && __atomic_load_n(&sh->view_seq, __ATOMIC_ACQUIRE) >= acked &&
         __atomic_load_n(&sh->pub_gen, __ATOMIC_ACQUIRE) == gen;
    if (!ok) {
        for (uint32_t i = 0; i < *n; i++)
            shard_view_unpin(sh, vs[i]);
        *n = 0;
    }
    return ok;
}

int shard_view_pin_all(struct shard *sh, struct shard_view ***views, uint32_t *count)
{
    ck_epoch_record_t *rec = cs_epoch_reader();
    if (!rec)
        return SHARD_VIEW_MISS;
    uint32_t cap = 8;
    struct shard_view **vs = malloc(cap * sizeof(*vs));
    if (!vs)
        return -ENOMEM;
    bool ok = false;
    uint32_t n = 0;
    for (unsigned t = 0; t < PIN_ALL_TRIES && !ok; t++) {
        uint32_t colls = 0;
        cs_epoch_begin(rec);
        for (struct shard_coll *c = __atomic_load_n(&sh->colls, __ATOMIC_ACQUIRE); c;
             c = __atomic_load_n(&c->next_all, __ATOMIC_ACQUIRE))
            colls++;
        if (colls <= cap)
            ok = pin_all_once(sh, vs, cap, &n);
        cs_epoch_end(rec);
        if (colls > cap) { /* room for them all, and try again */
            struct shard_view **nv = realloc(vs, colls * sizeof(*vs));
            if (!nv) {
                free(vs);
                return -ENOMEM;
            }
            vs = nv;
            cap = colls;
        }
    }
    if (!ok) {
        free(vs);
        view_want(sh);
        return SHARD_VIEW_MISS;
    }
    *views = vs;
    *count = n;
    return 0;
}

const char *shard_view_name(const struct shard_view *v, size_t *len)
{
    *len = v->coll->name_len;
    return v->coll->name;
}

void shard_view_ref(struct shard_view *v)
{
    __atomic_fetch_add(&v->pins, 1, __ATOMIC_ACQ_REL); /* the caller holds a pin: v stays */
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
