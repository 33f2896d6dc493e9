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
 * A cursor never shows part of a transaction that spans shards: its views are pinned under
 * engine/txn.c's gate, so no cross-shard commit is between its decision and its last install
 * meanwhile; a shard holding a committed transaction's intents misses its views (a private
 * snapshot then holds what is installed, which is everything decided: the gate).
 *
 * TRANSACTION CURSORS (cs_txn_cursor_open, cursor_open_txn) add two things. An overlay: the
 * transaction's own writes to the collection, sorted by key, merged over the streams (its put of
 * a key hides the stored record, its delete hides both). And walks: from each positioning call
 * on, every record a stream reads (read-ahead included: it was seen) is counted into an
 * order-free sum, and when the cursor is positioned again or closed, or the transaction ends,
 * the walk becomes a range the commit validates (from the bound it started at to the last record
 * read, or to the end if the stream ran off it).
 *
 * The caller merges the shards' sorted streams: each step picks the smallest (forward) or
 * largest (backward) head among the shards, O(shards) per step. A key lives on exactly one shard,
 * so heads never tie. Changing direction (next after prev, or the reverse) re-positions every
 * stream strictly after (before) the current key. Keys and values handed out point into the
 * pinned nodes: valid until the cursor moves or closes.
 *
 * EXPIRY. A stream steps over records whose expiry has passed (the clock is read once per
 * batch, and only when a record has an expiry), so cursors never show them, and neither does the
 * walk a transaction cursor records: shards/txn.c skips them alike when it validates a range.
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
#include <stddef.h>
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

/* A transaction cursor's walk over one stream (see TRANSACTION CURSORS). */
struct walk {
    bool active;
    int dir;             /* +1 or -1 */
    uint8_t bound_flags; /* SHARD_RANGE_* of the bound it started from */
    uint8_t *bound;      /* its key (owned) */
    uint16_t bound_len;
    bool ended;          /* the stream ran off its end */
    const uint8_t *last; /* last key read (in the pinned view) */
    size_t last_len;
    uint64_t count;
    uint64_t sum[2];
};

struct stream {
    struct walk *walk;                /* a transaction cursor's recording, or NULL */
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

#define CUR_OVERLAY (-2) /* c->cur: the current record is the transaction's own write */

/* The transaction's own writes to the collection, sorted by key (a transaction cursor). */
struct cursor_ov {
    uint8_t *key;
    uint32_t klen;
    uint8_t *val;
    uint32_t vlen;
    bool del;
};

struct cs_cursor {
    cs_db *db;  /* database */
    unsigned n; /* streams (one per shard) */
    int dir;    /* +1 forward, -1 backward */
    int cur;    /* stream holding the current record, -1 when not on one (or CUR_OVERLAY) */
    /* transaction cursors */
    cs_txn *txn; /* the transaction that records the ranges, or NULL */
    char coll[CS_NAME_MAX + 1];
    uint16_t coll_len;
    struct walk *walks;   /* one per stream, or NULL */
    struct cursor_ov *ov; /* the transaction's writes to coll, by key (owned) */
    size_t nov;
    ptrdiff_t ov_at;               /* overlay position (off either end: -1 / nov) */
    int shadow;                    /* stream whose record the overlay's current one hides, or -1 */
    int error;                     /* recording failed: the commit returns it */
    struct cs_cursor *next_of_txn; /* the transaction's open cursors */
    struct stream s[];             /* streams */
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
    uint64_t now_ms = 0; /* read once, at the first record with an expiry */
    cs_assert(st->batch >= 1);
    cs_assert(st->batch <= STREAM_BATCH_MAX);
    while (on) {
        stream_prefetch(st);
        uint64_t exp = btree_cursor_expiry(&st->cur);
        if (cs_unlikely(exp != 0)) {
            if (!now_ms)
                now_ms = cs_clock_ms();
            if (cs_expired_at(exp, now_ms)) { /* absent to readers (and to range validation) */
                on = dir > 0 ? btree_cursor_next(&st->cur) : btree_cursor_prev(&st->cur);
                continue;
            }
        }
        struct rec *r = &st->buf[n];
        const void *k;
        size_t klen, vlen;
        btree_cursor_get(&st->cur, &k, &klen, &r->val, &vlen);
        r->key = k;
        r->klen = (uint32_t)klen;
        r->vlen = (uint32_t)vlen;
        r->pfx = key_prefix(k, klen);
        struct walk *w = st->walk;
        if (w && w->active) {
            w->count++;
            shard_txn_range_mix(k, klen, r->val, vlen, w->sum);
            w->last = k;
            w->last_len = klen;
        }
        if (++n == st->batch)
            break; /* the cursor stays on buf[n - 1]; more may follow */
        on = dir > 0 ? btree_cursor_next(&st->cur) : btree_cursor_prev(&st->cur);
    }
    st->more = on;
    if (!on && st->walk && st->walk->active)
        st->walk->ended = true;
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

static void stream_position(struct stream *st, enum position pos, const void *key, size_t klen,
                            int dir)
{
    walk_start(st, pos, key, klen);
    if (!st->view) {
        stream_off(st);
        if (st->walk)
            st->walk->ended = true; /* the collection is absent here: an empty range */
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
        c->ov_at = (ptrdiff_t)c->nov - 1;
        return;
    case POS_GE:
        c->ov_at = (ptrdiff_t)lo;
        return;
    case POS_GT:
        c->ov_at = (ptrdiff_t)lo + at;
        return;
    case POS_LT:
        c->ov_at = (ptrdiff_t)lo - 1;
        return;
    }
}

static bool ov_on(const struct cs_cursor *c)
{
    return c->nov && c->ov_at >= 0 && (size_t)c->ov_at < c->nov;
}

/* Pick the head in direction dir. A transaction's own write of a key wins over the stored
 * record (which it hides); its delete hides both. */
static int pick(struct cs_cursor *c, int dir)
{
    c->dir = dir;
    for (;;) {
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
        c->shadow = -1;
        if (ov_on(c)) {
            const struct cursor_ov *o = &c->ov[c->ov_at];
            int r = !b ? -dir : key_cmp(o->key, o->klen, b->key, b->klen);
            if (r == 0 || (dir > 0 && r < 0) || (dir < 0 && r > 0)) {
                if (o->del) { /* hidden: step over it (and the record it deletes) */
                    c->ov_at += dir;
                    if (r == 0)
                        stream_advance(&c->s[best], dir);
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
        stream_position(&c->s[i], pos, key, klen, dir);
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

struct pin_args {
    cs_db *db;
    const char *coll;
    uint16_t nlen;
    struct shard_view **views;
};

static int pin_cb(void *arg)
{
    struct pin_args *a = arg;
    return db_pin_views(a->db, a->coll, a->nlen, a->views);
}

static void unpin_cb(void *arg)
{
    struct pin_args *a = arg;
    db_unpin_views(a->db, a->views);
}

/* Pin coll's views into the cursor's streams, cut under the gate (engine/txn.c: xgate_cut). */
static int pin_streams(cs_db *db, cs_cursor *c, const char *coll, uint16_t nlen)
{
    struct shard_view *stack[16], **views = c->n <= 16 ? stack : calloc(c->n, sizeof(*views));
    if (!views)
        return -ENOMEM;
    struct pin_args a = {.db = db, .coll = coll, .nlen = nlen, .views = views};
    int rc = xgate_cut(db, pin_cb, unpin_cb, &a);
    for (unsigned i = 0; i < c->n; i++) {
        c->s[i].view = rc ? NULL : views[i];
        if (c->s[i].view)
            btree_cursor_init(&c->s[i].cur, shard_view_snap(c->s[i].view));
    }
    if (views != stack)
        free(views);
    return rc;
}

static cs_cursor *cursor_new(cs_db *db)
{
    /* One allocation; a stream's buffer is written before it is read, so only the fields
     * below are set (not the kilobyte of buffer per stream). */
    cs_cursor *c = malloc(sizeof(*c) + db->nshards * sizeof(c->s[0]));
    if (!c)
        return NULL;
    memset(c, 0, sizeof(*c));
    c->db = db;
    c->n = db->nshards;
    c->dir = 1;
    c->cur = -1;
    c->shadow = -1;
    for (unsigned i = 0; i < c->n; i++) {
        c->s[i].walk = NULL;
        c->s[i].view = NULL;
        c->s[i].batch = STREAM_BATCH_MIN;
        stream_off(&c->s[i]);
    }
    return c;
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
    cs_cursor *c = cursor_new(db);
    if (!c)
        return -ENOMEM;
    rc = pin_streams(db, c, coll, nlen);
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
    for (unsigned i = 0; i < c->n; i++)
        if (c->s[i].view)
            shard_view_unpin(c->db->shards[i], c->s[i].view);
    for (unsigned i = 0; c->walks && i < c->n; i++)
        free(c->walks[i].bound);
    free(c->walks);
    cursor_ov_free(c->ov, c->nov);
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
        if (c->cur == CUR_OVERLAY) {
            c->ov_at += dir;
            if (c->shadow >= 0)
                stream_advance(&c->s[c->shadow], dir);
        } else {
            stream_advance(&c->s[c->cur], dir);
        }
        return pick(c, dir);
    }
    /* the key stays readable while the streams re-read their buffers: it lives in a pinned
     * node (or the overlay) */
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
    const struct stream *st = &c->s[c->cur];
    *key = st->buf[st->head].key;
    *klen = st->buf[st->head].klen;
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
    const struct stream *st = &c->s[c->cur];
    *val = st->buf[st->head].val;
    *vlen = st->buf[st->head].vlen;
    return 0;
}

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
                    struct shard_view **ro_views, struct cursor_ov *ov, size_t nov, cs_cursor **out)
{
    cs_cursor *c = cursor_new(db);
    if (!c) {
        cursor_ov_free(ov, nov);
        return -ENOMEM;
    }
    c->ov = ov;
    c->nov = nov;
    memcpy(c->coll, coll, nlen);
    c->coll_len = nlen;
    int rc = 0;
    if (ro_views) { /* a read-only transaction's snapshot: pinned again, nothing recorded */
        for (unsigned i = 0; i < c->n; i++)
            if ((c->s[i].view = ro_views[i]) != NULL) {
                shard_view_ref(c->s[i].view);
                btree_cursor_init(&c->s[i].cur, shard_view_snap(c->s[i].view));
            }
    } else {
        c->txn = t;
        c->walks = calloc(c->n, sizeof(*c->walks));
        rc = c->walks ? 0 : -ENOMEM;
        for (unsigned i = 0; !rc && i < c->n; i++) {
            c->walks[i].bound = malloc(CS_KEY_MAX);
            rc = c->walks[i].bound ? 0 : -ENOMEM;
            c->s[i].walk = &c->walks[i];
        }
        if (!rc)
            rc = pin_streams(db, c, coll, nlen);
    }
    if (rc) {
        c->txn = NULL;
        cs_cursor_close(c);
        return rc;
    }
    *out = c;
    return 0;
}
