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

struct stream {
    struct shard_view *view; /* pinned; NULL: the collection is absent on this shard */
    struct btree_cursor cur; /* over the view's snapshot */
    bool on;                 /* positioned on a record */
    const uint8_t *key;      /* current record */
    size_t klen;
    const void *val;
    size_t vlen;
};

struct cs_cursor {
    cs_db *db;        /* database */
    unsigned n;       /* streams (one per shard) */
    struct stream *s; /* streams */
    int dir;          /* +1 forward, -1 backward */
    int cur;          /* stream holding the current record, -1 when not on one */
};

enum position { POS_FIRST, POS_LAST, POS_GE, POS_GT, POS_LT };

static void stream_load(struct stream *st, bool on)
{
    st->on = on;
    if (!on)
        return;
    const void *k;
    btree_cursor_get(&st->cur, &k, &st->klen, &st->val, &st->vlen);
    st->key = k;
}

static bool stream_at(const struct stream *st, const void *key, size_t klen)
{
    return st->klen == klen && memcmp(st->key, key, klen) == 0;
}

static void stream_position(struct stream *st, enum position pos, const void *key, size_t klen)
{
    if (!st->view) {
        st->on = false;
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

/* Pick the head in direction dir. */
static int pick(struct cs_cursor *c, int dir)
{
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
    c->dir = dir;
    c->cur = best;
    return best < 0 ? CS_ENOTFOUND : 0;
}

static int reposition(struct cs_cursor *c, enum position pos, const void *key, size_t klen, int dir)
{
    for (unsigned i = 0; i < c->n; i++)
        stream_position(&c->s[i], pos, key, klen);
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
    unpin_views(c);
    free(c->s);
    free(c);
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
    if (!c || c->cur < 0)
        return CS_EINVAL;
    struct stream *st = &c->s[c->cur];
    if (c->dir == dir) {
        stream_load(st, dir > 0 ? btree_cursor_next(&st->cur) : btree_cursor_prev(&st->cur));
        return pick(c, dir);
    }
    /* the key stays readable while the stream moves: it lives in a pinned node */
    return reposition(c, dir > 0 ? POS_GT : POS_LT, st->key, st->klen, dir);
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
    if (!c || c->cur < 0 || !key || !klen)
        return CS_EINVAL;
    *key = c->s[c->cur].key;
    *klen = c->s[c->cur].klen;
    return 0;
}

int cs_cursor_value(const cs_cursor *c, const void **val, size_t *vlen)
{
    if (!c || c->cur < 0 || !val || !vlen)
        return CS_EINVAL;
    *val = c->s[c->cur].val;
    *vlen = c->s[c->cur].vlen;
    return 0;
}
