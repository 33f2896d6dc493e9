/* Cursors over a collection in global key order.
 *
 * cs_cursor_open() pins, on every shard, the collection's published view: an immutable
 * copy-on-write snapshot that the cursor then walks directly with a B+ tree cursor, without the
 * shard thread (see "VIEWS" in shards/shard.c). Writers are never blocked and never seen: the
 * nodes a pinned view reaches do not change. When a shard's view is not fresh enough (it lacks a
 * write that may have been acknowledged, or in sync mode nothing is published yet), that shard
 * takes a private snapshot for the cursor instead (one round trip, SHARD_VIEW_PIN; in sync mode
 * it completes once everything the snapshot holds is durable).
 *
 * A cursor never shows part of a transaction that spans shards: its views are pinned under
 * engine/txn.c's gate, so no cross-shard commit is between its decision and its last install
 * meanwhile; a shard holding a committed transaction's intents misses its views (a private
 * snapshot then holds what is installed, which is everything decided: the gate).
 *
 * The caller merges the shards' sorted streams: each step picks the smallest (forward) or
 * largest (backward) head among the shards, O(shards) per step. A key lives on exactly one shard,
 * so heads never tie. Changing direction (next after prev, or the reverse) re-positions every
 * stream strictly after (before) the current key. Keys and values handed out point into the
 * pinned nodes: valid until the cursor moves or closes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/db.h"

/* A transaction cursor's walk over one stream: from a positioning bound, in one direction, over
 * every record the stream loaded; it becomes a range the commit validates (see cursor_txn). */
struct walk {
    bool active;
    int dir;             /* +1 or -1 */
    uint8_t bound_flags; /* SHARD_RANGE_* of the bound it started from */
    uint8_t *bound;      /* its key (owned) */
    uint16_t bound_len;
    bool ended;          /* the stream ran off its end */
    const uint8_t *last; /* last key loaded (in the pinned view) */
    size_t last_len;
    uint64_t count;
    uint64_t sum[2];
};

struct stream {
    struct shard_view *view; /* pinned; NULL: the collection is absent on this shard */
    struct btree_cursor cur; /* over the view's snapshot */
    bool on;                 /* positioned on a record */
    const uint8_t *key;      /* current record */
    size_t klen;
    const void *val;
    size_t vlen;
    struct walk *walk;       /* a transaction cursor's recording, or NULL */
};

#define CUR_OVERLAY (-2) /* c->cur: the current record is the transaction's own write */

struct cs_cursor {
    cs_db *db;        /* database */
    unsigned n;       /* streams (one per shard) */
    struct stream *s; /* streams */
    int dir;          /* +1 forward, -1 backward */
    int cur;          /* stream holding the current record, -1 when not on one */
    /* transaction cursors (cs_txn_cursor_open) */
    cs_txn *txn;               /* the transaction that records the ranges, or NULL */
    char coll[CS_NAME_MAX + 1];
    uint16_t coll_len;
    struct walk *walks;        /* one per stream */
    struct cursor_ov *ov;      /* the transaction's writes to coll, by key (owned) */
    size_t nov;
    ssize_t ov_at;             /* overlay position, -1 / nov when off either end */
    int shadow;                /* stream whose record the overlay's current one hides, or -1 */
    int error;                 /* recording failed: the commit will return it */
    struct cs_cursor *next_of_txn; /* the transaction's open cursors */
};

enum position { POS_FIRST, POS_LAST, POS_GE, POS_GT, POS_LT };

static void stream_load(struct stream *st, bool on)
{
    st->on = on;
    struct walk *w = st->walk;
    if (!on) {
        if (w && w->active)
            w->ended = true;
        return;
    }
    const void *k;
    btree_cursor_get(&st->cur, &k, &st->klen, &st->val, &st->vlen);
    st->key = k;
    if (w && w->active &&
        !(!(w->bound_flags & (SHARD_RANGE_INCL | SHARD_RANGE_UNBOUND)) && w->count == 0 &&
          st->klen == w->bound_len && memcmp(st->key, w->bound, st->klen) == 0)) {
        /* (a seek to an excluded bound may land on it first: not part of the walk) */
        w->count++;
        shard_txn_range_mix(st->key, st->klen, st->val, st->vlen, w->sum);
        w->last = st->key;
        w->last_len = st->klen;
    }
}

static bool stream_at(const struct stream *st, const void *key, size_t klen)
{
    return st->klen == klen && memcmp(st->key, key, klen) == 0;
}

static void walk_start(struct stream *st, enum position pos, const void *key, size_t klen)
{
    struct walk *w = st->walk;
    if (!w)
        return;
    w->active = true;
    w->dir = pos == POS_LAST || pos == POS_LT ? -1 : 1;
    w->ended = false;
    w->last = NULL;
    w->last_len = 0;
    w->count = 0;
    w->sum[0] = w->sum[1] = 0;
    w->bound_len = 0;
    w->bound_flags = pos == POS_FIRST || pos == POS_LAST ? SHARD_RANGE_UNBOUND
                                                          : (pos == POS_GE ? SHARD_RANGE_INCL : 0);
    if (!(w->bound_flags & SHARD_RANGE_UNBOUND)) {
        memcpy(w->bound, key, klen);
        w->bound_len = (uint16_t)klen;
    }
}

static void stream_position(struct stream *st, enum position pos, const void *key, size_t klen)
{
    walk_start(st, pos, key, klen);
    if (!st->view) {
        st->on = false;
        if (st->walk)
            st->walk->ended = true; /* the collection is absent here: an empty range */
        return;
    }
    struct btree_cursor *cur = &st->cur;
    switch (pos) {
    case POS_FIRST:
        stream_load(st, btree_cursor_first(cur));
        return;
    case POS_LAST:
        stream_load(st, btree_cursor_last(cur));
        return;
    case POS_GE:
        stream_load(st, btree_cursor_seek(cur, key, klen));
        return;
    case POS_GT:
        stream_load(st, btree_cursor_seek(cur, key, klen));
        if (st->on && stream_at(st, key, klen))
            stream_load(st, btree_cursor_next(cur));
        return;
    case POS_LT:
        stream_load(st, btree_cursor_seek_le(cur, key, klen));
        if (st->on && stream_at(st, key, klen))
            stream_load(st, btree_cursor_prev(cur));
        return;
    }
}

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    int r = memcmp(a, b, alen < blen ? alen : blen);
    if (r)
        return r;
    return alen < blen ? -1 : alen > blen;
}

/* The transaction's own writes to the collection, sorted by key (a transaction cursor). */
struct cursor_ov {
    uint8_t *key;
    uint32_t klen;
    uint8_t *val;
    uint32_t vlen;
    bool del;
};

struct cursor_ov *cursor_ov_new(size_t n)
{
    return calloc(n ? n : 1, sizeof(struct cursor_ov));
}

void cursor_ov_free(struct cursor_ov *ov, size_t n)
{
    for (size_t i = 0; ov && i < n; i++) {
        free(ov[i].key);
        free(ov[i].val);
    }
    free(ov);
}

void cursor_ov_set(struct cursor_ov *ov, size_t i, uint8_t *key, uint32_t klen, uint8_t *val,
                   uint32_t vlen, bool del)
{
    ov[i] = (struct cursor_ov){.key = key, .klen = klen, .val = val, .vlen = vlen, .del = del};
}

static void ov_position(struct cs_cursor *c, enum position pos, const void *key, size_t klen)
{
    if (!c->nov)
        return;
    size_t lo = 0, hi = c->nov; /* first entry >= key */
    while (key && lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (key_cmp(c->ov[mid].key, c->ov[mid].klen, key, klen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    bool at = key && lo < c->nov && key_cmp(c->ov[lo].key, c->ov[lo].klen, key, klen) == 0;
    switch (pos) {
    case POS_FIRST:
        c->ov_at = 0;
        return;
    case POS_LAST:
        c->ov_at = (ssize_t)c->nov - 1;
        return;
    case POS_GE:
        c->ov_at = (ssize_t)lo;
        return;
    case POS_GT:
        c->ov_at = (ssize_t)lo + at;
        return;
    case POS_LT:
        c->ov_at = (ssize_t)lo - 1;
        return;
    }
}

static bool ov_on(const struct cs_cursor *c)
{
    return c->nov && c->ov_at >= 0 && (size_t)c->ov_at < c->nov;
}

/* Pick the head in direction dir. The transaction's own write of a key wins over the stored
 * record (which it hides); its delete hides both. */
static int pick(struct cs_cursor *c, int dir)
{
    c->dir = dir;
    for (;;) {
        int best = -1;
        for (unsigned i = 0; i < c->n; i++) {
            const struct stream *st = &c->s[i];
            if (!st->on)
                continue;
            if (best < 0) {
                best = (int)i;
                continue;
            }
            const struct stream *b = &c->s[best];
            int r = key_cmp(st->key, st->klen, b->key, b->klen);
            if ((dir > 0 && r < 0) || (dir < 0 && r > 0))
                best = (int)i;
        }
        c->shadow = -1;
        if (ov_on(c)) {
            const struct cursor_ov *o = &c->ov[c->ov_at];
            int r = best < 0 ? -dir
                             : key_cmp(o->key, o->klen, c->s[best].key, c->s[best].klen);
            if (r == 0 || (dir > 0 && r < 0) || (dir < 0 && r > 0)) {
                if (o->del) { /* hidden: step over it (and the record it deletes) */
                    c->ov_at += dir;
                    if (r == 0) {
                        struct stream *st = &c->s[best];
                        stream_load(st, dir > 0 ? btree_cursor_next(&st->cur)
                                                : btree_cursor_prev(&st->cur));
                    }
                    continue;
                }
                c->cur = CUR_OVERLAY;
                c->shadow = r == 0 ? best : -1;
                return 0;
            }
        }
        c->cur = best;
        return best < 0 ? CS_ENOTFOUND : 0;
    }
}

static int reposition(struct cs_cursor *c, enum position pos, const void *key, size_t klen, int dir)
{
    cursor_flush_walks(c);
    for (unsigned i = 0; i < c->n; i++)
        stream_position(&c->s[i], pos, key, klen);
    ov_position(c, pos, key, klen);
    return pick(c, dir);
}

int db_pin_views(cs_db *db, const char *coll, uint16_t nlen, struct shard_view **views)
{
    int rc = 0;
    unsigned n = db->nshards;
    struct waiter *ws = NULL; /* requests to the shards whose view missed (rare) */
    for (unsigned i = 0; i < n && !rc; i++) {
        views[i] = NULL;
        if (shard_view_pin(db->shards[i], coll, nlen, &views[i]) == 0)
            continue;
        if (!ws && !(ws = calloc(n, sizeof(*ws)))) {
            rc = -ENOMEM;
            break;
        }
        waiter_init(&ws[i], SHARD_VIEW_PIN);
        ws[i].req.coll = coll;
        ws[i].req.coll_len = nlen;
        shard_submit(db->shards[i], &ws[i].req);
    }
    for (unsigned i = 0; ws && i < n; i++) {
        if (!ws[i].req.done)
            continue; /* not asked */
        waiter_wait(&ws[i], true);
        if (ws[i].req.rc && !rc)
            rc = ws[i].req.rc;
        views[i] = ws[i].req.view;
    }
    free(ws);
    if (rc)
        db_unpin_views(db, views);
    return rc;
}

void db_unpin_views(cs_db *db, struct shard_view **views)
{
    for (unsigned i = 0; i < db->nshards; i++)
        if (views[i]) {
            shard_view_unpin(db->shards[i], views[i]);
            views[i] = NULL;
        }
}

static int pin_views(cs_db *db, cs_cursor *c, const char *coll, uint16_t nlen)
{
    struct shard_view **views = calloc(c->n, sizeof(*views));
    if (!views)
        return -ENOMEM;
    int rc = db_pin_views(db, coll, nlen, views);
    for (unsigned i = 0; i < c->n; i++)
        c->s[i].view = views[i];
    free(views);
    return rc;
}

static void unpin_views(cs_cursor *c)
{
    for (unsigned i = 0; c->s && i < c->n; i++)
        if (c->s[i].view) {
            shard_view_unpin(c->db->shards[i], c->s[i].view);
            c->s[i].view = NULL;
        }
}

int cs_cursor_open(cs_db *db, const char *coll, cs_cursor **out)
{
    if (!out)
        return CS_EINVAL;
    *out = NULL;
    uint16_t nlen;
    if (!db)
        return CS_EINVAL;
    int rc = db_check_name(coll, &nlen);
    if (rc)
        return rc;
    cs_cursor *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->db = db;
    c->n = db->nshards;
    c->cur = -1;
    c->s = calloc(c->n, sizeof(*c->s));
    if (!c->s) {
        cs_cursor_close(c);
        return -ENOMEM;
    }
    bool gated = xgate_pin_begin(db);
    rc = pin_views(db, c, coll, nlen);
    if (!rc && !gated && !xgate_still_unused(db)) {
        /* a cross-shard commit was decided while the views were pinned: cut again, gated */
        unpin_views(c);
        gated = xgate_pin_begin(db);
        rc = pin_views(db, c, coll, nlen);
    }
    xgate_pin_end(db, gated);
    for (unsigned i = 0; i < c->n; i++)
        if (c->s[i].view)
            btree_cursor_init(&c->s[i].cur, shard_view_snap(c->s[i].view));
    if (rc) {
        cs_cursor_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

void cs_cursor_close(cs_cursor *c)
{
    if (!c)
        return;
    if (c->txn) {
        cursor_flush_walks(c);
        txn_cursor_closed(c->txn, c);
    }
    unpin_views(c);
    for (unsigned i = 0; c->walks && i < c->n; i++)
        free(c->walks[i].bound);
    free(c->walks);
    cursor_ov_free(c->ov, c->nov);
    free(c->s);
    free(c);
}

int cursor_error(const cs_cursor *c)
{
    return c->error;
}

cs_cursor *cursor_next_of_txn(cs_cursor *c)
{
    return c->next_of_txn;
}

void cursor_set_next_of_txn(cs_cursor *c, cs_cursor *next)
{
    c->next_of_txn = next;
}

int cs_cursor_first(cs_cursor *c)
{
    if (!c)
        return CS_EINVAL;
    return reposition(c, POS_FIRST, NULL, 0, 1);
}

int cs_cursor_last(cs_cursor *c)
{
    if (!c)
        return CS_EINVAL;
    return reposition(c, POS_LAST, NULL, 0, -1);
}

int cs_cursor_seek(cs_cursor *c, const void *key, size_t klen)
{
    if (!c)
        return CS_EINVAL;
    int rc = db_check_key(key, klen);
    if (rc)
        return rc;
    return reposition(c, POS_GE, key, klen, 1);
}

static int move(cs_cursor *c, int dir)
{
    if (!c || c->cur == -1)
        return CS_EINVAL;
    if (c->dir == dir) {
        struct stream *st = c->cur == CUR_OVERLAY ? (c->shadow >= 0 ? &c->s[c->shadow] : NULL)
                                                  : &c->s[c->cur];
        if (c->cur == CUR_OVERLAY)
            c->ov_at += dir;
        if (st)
            stream_load(st, dir > 0 ? btree_cursor_next(&st->cur) : btree_cursor_prev(&st->cur));
        return pick(c, dir);
    }
    /* the key stays readable while the streams move: it lives in a pinned node (or the
     * overlay) */
    const void *key;
    size_t klen;
    if (cs_cursor_key(c, &key, &klen))
        return CS_EINVAL;
    return reposition(c, dir > 0 ? POS_GT : POS_LT, key, klen, dir);
}

int cs_cursor_next(cs_cursor *c)
{
    return move(c, 1);
}

int cs_cursor_prev(cs_cursor *c)
{
    return move(c, -1);
}

int cs_cursor_key(const cs_cursor *c, const void **key, size_t *klen)
{
    if (!c || c->cur == -1 || !key || !klen)
        return CS_EINVAL;
    if (c->cur == CUR_OVERLAY) {
        *key = c->ov[c->ov_at].key;
        *klen = c->ov[c->ov_at].klen;
        return 0;
    }
    *key = c->s[c->cur].key;
    *klen = c->s[c->cur].klen;
    return 0;
}

int cs_cursor_value(const cs_cursor *c, const void **val, size_t *vlen)
{
    if (!c || c->cur == -1 || !val || !vlen)
        return CS_EINVAL;
    if (c->cur == CUR_OVERLAY) {
        *val = c->ov[c->ov_at].val;
        *vlen = c->ov[c->ov_at].vlen;
        return 0;
    }
    *val = c->s[c->cur].val;
    *vlen = c->s[c->cur].vlen;
    return 0;
}

/* ---- transaction cursors ---- */

/* Hand every active walk to the transaction as a range (it copies the bounds). */
void cursor_flush_walks(cs_cursor *c)
{
    for (unsigned i = 0; c->txn && c->walks && i < c->n; i++) {
        struct walk *w = &c->walks[i];
        if (!w->active)
            continue;
        w->active = false;
        struct shard_txn_range r = {.coll_len = (uint8_t)c->coll_len,
                                    .coll = c->coll,
                                    .count = w->count,
                                    .sum = {w->sum[0], w->sum[1]}};
        /* the far end: the last record loaded (inclusive), or unbounded if the stream ran off */
        uint8_t far_flags = w->ended || !w->last ? SHARD_RANGE_UNBOUND : SHARD_RANGE_INCL;
        if (w->dir > 0) {
            r.lo_flags = w->bound_flags;
            r.lo = w->bound;
            r.lo_len = w->bound_len;
            r.hi_flags = far_flags;
            r.hi = w->last;
            r.hi_len = (uint16_t)w->last_len;
        } else {
            r.hi_flags = w->bound_flags;
            r.hi = w->bound;
            r.hi_len = w->bound_len;
            r.lo_flags = far_flags;
            r.lo = w->last;
            r.lo_len = (uint16_t)w->last_len;
        }
        int rc = txn_cursor_range(c->txn, i, &r);
        if (rc && !c->error)
            c->error = rc;
    }
}

void cursor_detach(cs_cursor *c)
{
    cursor_flush_walks(c);
    c->txn = NULL;
}

int cursor_open_txn(cs_db *db, const char *coll, uint16_t nlen, cs_txn *t,
                    struct shard_view **ro_views, struct cursor_ov *ov, size_t nov,
                    cs_cursor **out)
{
    cs_cursor *c = calloc(1, sizeof(*c));
    if (!c) {
        cursor_ov_free(ov, nov);
        return -ENOMEM;
    }
    c->db = db;
    c->n = db->nshards;
    c->cur = -1;
    c->shadow = -1;
    c->ov = ov;
    c->nov = nov;
    memcpy(c->coll, coll, nlen);
    c->coll_len = nlen;
    c->s = calloc(c->n, sizeof(*c->s));
    int rc = c->s ? 0 : -ENOMEM;
    if (!rc && ro_views) { /* a read-only transaction's snapshot: pinned again, nothing recorded */
        for (unsigned i = 0; i < c->n; i++)
            if ((c->s[i].view = ro_views[i]) != NULL)
                shard_view_ref(c->s[i].view);
    } else if (!rc) {
        c->txn = t;
        c->walks = calloc(c->n, sizeof(*c->walks));
        rc = c->walks ? 0 : -ENOMEM;
        for (unsigned i = 0; !rc && i < c->n; i++) {
            c->walks[i].bound = malloc(CS_KEY_MAX);
            rc = c->walks[i].bound ? 0 : -ENOMEM;
            c->s[i].walk = &c->walks[i];
        }
        if (!rc) {
            bool gated = xgate_pin_begin(db);
            rc = pin_views(db, c, coll, nlen);
            xgate_pin_end(db, gated);
        }
    }
    for (unsigned i = 0; !rc && i < c->n; i++)
        if (c->s[i].view)
            btree_cursor_init(&c->s[i].cur, shard_view_snap(c->s[i].view));
    if (rc) {
        c->txn = NULL;
        cs_cursor_close(c);
        return rc;
    }
    *out = c;
    return 0;
}
