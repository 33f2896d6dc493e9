/* Cursors over a collection in global key order.
 *
 * cs_cursor_open() pins, on every shard, the collection's published view: an immutable
 * copy-on-write snapshot that the cursor then walks directly with a B+ tree cursor, without the
 * shard thread (see "VIEWS" in shards/views.c). Writers are never blocked and never seen: the
 * nodes a pinned view reaches do not change. When a shard's view is not fresh enough (it lacks a
 * write that may have been acknowledged, or in sync mode nothing is published yet), that shard
 * takes a private snapshot for the cursor instead (one round trip, SHARD_VIEW_PIN; in sync mode
 * it completes once everything the snapshot holds is durable).
 *
 * The caller merges the shards' sorted streams: each step picks the smallest (forward) or
 * largest (backward) head among the shards, O(shards) per step. A key lives on exactly one shard,
 * so heads never tie. Changing direction (next after prev, or the reverse) re-positions every
 * stream strictly after (before) the current key. Keys and values handed out point into the
 * pinned nodes: valid until the cursor moves or closes.
 *
 * READ-AHEAD. A stream does not step its B+ tree cursor once per record of the merge: it reads
 * a batch of records ahead (key, value and the key's first 8 bytes as a big-endian integer) into
 * its buffer, and the merge compares those integers, falling back to the keys only when they
 * tie. A batch is a tight loop over one leaf or two, so the cache misses on its entries overlap
 * instead of each waiting behind the previous comparison, and a comparison touches no node. The
 * first batch after a positioning call is STREAM_BATCH_MIN records and each next one doubles,
 * up to STREAM_BATCH_MAX, so a short scan over many shards reads few records it does not use.
 * A leaf's entries sit in its heap in insertion order, not key order, so reading them in key
 * order jumps around the node: when a stream enters a leaf it prefetches the whole node, and the
 * misses on its entries are paid in parallel, not one after another (seekrandom + 100 nexts on 2
 * shards spends most of its time in these misses: a stream reads two or three leaves).
 * Invariants: a stream is on a record iff head < count, its current record is buf[head]; when
 * more is set its B+ tree cursor is on buf[count - 1] and records may follow in the direction
 * it read; when not, the stream ends at buf[count - 1]. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/db.h"

#define STREAM_BATCH_MIN 4u  /* records read ahead after a positioning call */
#define STREAM_BATCH_MAX 32u /* records read ahead at most (the batch doubles up to it) */
/* A B+ tree node is one allocation of this many bytes (NODE_BYTES, shards/btree.c); the cursor
 * prefetches a leaf's lines when it enters the leaf. A wrong value costs speed only. */
#define LEAF_PREFETCH_BYTES 4096u
#define CACHE_LINE_BYTES 64u

/* A record read ahead: views into a pinned node. */
struct rec {
    uint64_t pfx;       /* key bytes 0..7 big-endian, zero padded: integer order = memcmp order */
    const uint8_t *key; /* the key */
    const void *val;    /* the value */
    uint32_t klen;      /* key bytes, <= CS_KEY_MAX */
    uint32_t vlen;      /* value bytes, <= CS_VALUE_MAX */
};

struct stream {
    struct shard_view *view;          /* pinned; NULL: the collection is absent on this shard */
    struct btree_cursor cur;          /* over the view's snapshot; see READ-AHEAD */
    const void *leaf;                 /* the leaf last prefetched, or NULL */
    bool more;                        /* records may follow buf in the direction read */
    uint8_t head;                     /* current record: buf[head], when head < count */
    uint8_t count;                    /* records in buf */
    uint8_t batch;                    /* records the next read-ahead takes */
    struct rec buf[STREAM_BATCH_MAX]; /* records read ahead, in the direction read */
};

_Static_assert(STREAM_BATCH_MAX <= UINT8_MAX / 2, "head, count and batch fit in a byte");
_Static_assert(CS_KEY_MAX <= UINT32_MAX && CS_VALUE_MAX <= UINT32_MAX, "lengths fit in a rec");

struct cs_cursor {
    cs_db *db;         /* database */
    unsigned n;        /* streams (one per shard) */
    int dir;           /* +1 forward, -1 backward */
    int cur;           /* stream holding the current record, -1 when not on one */
    struct stream s[]; /* streams */
};

enum position { POS_FIRST, POS_LAST, POS_GE, POS_GT, POS_LT };

/* The first 8 bytes of a key as a big-endian integer, zero padded. Two keys whose integers
 * differ compare as the integers do; equal integers need the keys (see rec_cmp). */
static uint64_t key_prefix(const uint8_t *key, size_t klen)
{
    uint64_t x = 0;
    memcpy(&x, key, klen < sizeof(x) ? klen : sizeof(x));
    return __builtin_bswap64(x);
}

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    int r = memcmp(a, b, alen < blen ? alen : blen);
    if (r)
        return r;
    return alen < blen ? -1 : alen > blen;
}

/* memcmp order, shorter first on a tie: the prefix integers decide unless they are equal (the
 * first differing byte within 8 decides both ways; zero padding sorts a shorter key first). */
static int rec_cmp(const struct rec *a, const struct rec *b)
{
    if (a->pfx != b->pfx)
        return a->pfx < b->pfx ? -1 : 1;
    return key_cmp(a->key, a->klen, b->key, b->klen);
}

static void stream_off(struct stream *st)
{
    st->leaf = NULL;
    st->more = false;
    st->head = 0;
    st->count = 0;
}

/* The B+ tree cursor (on a record) entered another leaf: prefetch all of it. */
static void stream_prefetch(struct stream *st)
{
    const char *leaf = (const char *)st->cur.node[st->cur.depth - 1];
    if (leaf == st->leaf)
        return;
    st->leaf = leaf;
    for (unsigned off = 0; off < LEAF_PREFETCH_BYTES; off += CACHE_LINE_BYTES)
        __builtin_prefetch(leaf + off);
}

/* Read up to st->batch records into buf, starting with the one the B+ tree cursor is on (when
 * on), stepping in direction dir; then grow the next batch. */
static void stream_read(struct stream *st, int dir, bool on)
{
    unsigned n = 0;
    cs_assert(st->batch >= 1);
    cs_assert(st->batch <= STREAM_BATCH_MAX);
    while (on) {
        stream_prefetch(st);
        struct rec *r = &st->buf[n];
        const void *k;
        size_t klen, vlen;
        btree_cursor_get(&st->cur, &k, &klen, &r->val, &vlen);
        r->key = k;
        r->klen = (uint32_t)klen;
        r->vlen = (uint32_t)vlen;
        r->pfx = key_prefix(k, klen);
        if (++n == st->batch)
            break; /* the cursor stays on buf[n - 1]; more may follow */
        on = dir > 0 ? btree_cursor_next(&st->cur) : btree_cursor_prev(&st->cur);
    }
    st->more = on;
    st->head = 0;
    st->count = (uint8_t)n;
    if (st->batch < STREAM_BATCH_MAX)
        st->batch = (uint8_t)(st->batch * 2u);
}

/* Move the stream to its next record in direction dir (the direction it read in). */
static void stream_advance(struct stream *st, int dir)
{
    cs_assert(st->head < st->count);
    if (++st->head < st->count)
        return;
    if (!st->more) {
        stream_off(st);
        return;
    }
    stream_read(st, dir, dir > 0 ? btree_cursor_next(&st->cur) : btree_cursor_prev(&st->cur));
}

/* Whether the B+ tree cursor (on a record) is on key. */
static bool cursor_at(const struct btree_cursor *cur, const void *key, size_t klen)
{
    const void *k, *v;
    size_t kl, vl;
    btree_cursor_get(cur, &k, &kl, &v, &vl);
    return kl == klen && memcmp(k, key, klen) == 0;
}

static void stream_position(struct stream *st, enum position pos, const void *key, size_t klen,
                            int dir)
{
    if (!st->view) {
        stream_off(st);
        return;
    }
    struct btree_cursor *cur = &st->cur;
    bool on = false;
    switch (pos) {
    case POS_FIRST:
        on = btree_cursor_first(cur);
        break;
    case POS_LAST:
        on = btree_cursor_last(cur);
        break;
    case POS_GE:
        on = btree_cursor_seek(cur, key, klen);
        break;
    case POS_GT:
        on = btree_cursor_seek(cur, key, klen);
        if (on && cursor_at(cur, key, klen))
            on = btree_cursor_next(cur);
        break;
    case POS_LT:
        on = btree_cursor_seek_le(cur, key, klen);
        if (on && cursor_at(cur, key, klen))
            on = btree_cursor_prev(cur);
        break;
    }
    st->batch = STREAM_BATCH_MIN;
    st->leaf = NULL;
    stream_read(st, dir, on);
}

/* Pick the head in direction dir. */
static int pick(struct cs_cursor *c, int dir)
{
    int best = -1;
    const struct rec *b = NULL;
    for (unsigned i = 0; i < c->n; i++) {
        const struct stream *st = &c->s[i];
        if (st->head >= st->count)
            continue;
        const struct rec *r = &st->buf[st->head];
        if (b) {
            int cmp = rec_cmp(r, b);
            if (dir > 0 ? cmp >= 0 : cmp <= 0)
                continue;
        }
        best = (int)i;
        b = r;
    }
    c->dir = dir;
    c->cur = best;
    return best < 0 ? CS_ENOTFOUND : 0;
}

static int reposition(struct cs_cursor *c, enum position pos, const void *key, size_t klen, int dir)
{
    for (unsigned i = 0; i < c->n; i++)
        stream_position(&c->s[i], pos, key, klen, dir);
    return pick(c, dir);
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
    /* One allocation; a stream's buffer is written before it is read, so only the fields
     * below are set (not the kilobyte of buffer per stream). */
    cs_cursor *c = malloc(sizeof(*c) + db->nshards * sizeof(c->s[0]));
    if (!c)
        return -ENOMEM;
    c->db = db;
    c->n = db->nshards;
    c->dir = 1;
    c->cur = -1;
    for (unsigned i = 0; i < c->n; i++) {
        c->s[i].view = NULL;
        c->s[i].batch = STREAM_BATCH_MIN;
        stream_off(&c->s[i]);
    }
    struct waiter *ws = NULL; /* requests to the shards whose view missed (rare) */
    for (unsigned i = 0; i < c->n && !rc; i++) {
        if (shard_view_pin(db->shards[i], coll, nlen, &c->s[i].view) == 0)
            continue;
        if (!ws && !(ws = calloc(c->n, sizeof(*ws)))) {
            rc = -ENOMEM;
            break;
        }
        waiter_init(&ws[i], SHARD_VIEW_PIN);
        ws[i].req.coll = coll;
        ws[i].req.coll_len = nlen;
        shard_submit(db->shards[i], &ws[i].req);
    }
    for (unsigned i = 0; ws && i < c->n; i++) {
        if (!ws[i].req.done)
            continue; /* not asked */
        waiter_wait(&ws[i], true);
        if (ws[i].req.rc && !rc)
            rc = ws[i].req.rc;
        c->s[i].view = ws[i].req.view;
    }
    free(ws);
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
    for (unsigned i = 0; i < c->n; i++)
        if (c->s[i].view)
            shard_view_unpin(c->db->shards[i], c->s[i].view);
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
        stream_advance(st, dir);
        return pick(c, dir);
    }
    /* the key stays readable while the stream re-reads its buffer: it lives in a pinned node */
    const struct rec *r = &st->buf[st->head];
    return reposition(c, dir > 0 ? POS_GT : POS_LT, r->key, r->klen, dir);
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
    const struct stream *st = &c->s[c->cur];
    *key = st->buf[st->head].key;
    *klen = st->buf[st->head].klen;
    return 0;
}

int cs_cursor_value(const cs_cursor *c, const void **val, size_t *vlen)
{
    if (!c || c->cur < 0 || !val || !vlen)
        return CS_EINVAL;
    const struct stream *st = &c->s[c->cur];
    *val = st->buf[st->head].val;
    *vlen = st->buf[st->head].vlen;
    return 0;
}
