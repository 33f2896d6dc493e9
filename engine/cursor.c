/* Cursors over a collection in global key order.
 *
 * cs_cursor_open() takes a copy-on-write snapshot of the collection on every shard (O(1) each;
 * in sync mode the open completes once everything the snapshot holds is durable). Each shard then
 * serves its part in bounded batches (64 records after a positioning call, doubling with each
 * further read up to CURSOR_BATCH_RECORDS, and at most SHARD_SCAN_BYTES_MAX bytes per round trip),
 * read from its snapshot, so writers are never blocked and a batch boundary never shows a later
 * write. The caller merges the shards' sorted streams: each step picks the smallest (forward) or
 * largest (backward) head among the shards, O(shards) per step. A key lives on exactly one shard,
 * so heads never tie.
 *
 * Changing direction (next after prev, or the reverse) re-positions every stream strictly after
 * (before) the current key, which costs one round trip per shard. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/db.h"

#define CURSOR_BATCH_FIRST 64u    /* records a stream asks for after a positioning call */
#define CURSOR_BATCH_RECORDS 512u /* ...doubling on each further read up to this */

struct stream {
    struct shard_snap *snap; /* NULL: the collection is absent on this shard */
    uint8_t *buf;            /* records of the current batch (shard arena memory) */
    size_t len;              /* bytes in buf */
    uint32_t count;          /* records in buf */
    uint32_t index;          /* record the stream is on */
    size_t off;              /* its offset in buf */
    bool end;                /* the shard has nothing beyond this batch */
    bool on;                 /* positioned on a record */
    unsigned batch;          /* records the next read asks for */
    const uint8_t *key;      /* current record */
    uint32_t klen;
    const uint8_t *val;
    uint32_t vlen;
};

struct cs_cursor {
    cs_db *db;         /* database */
    unsigned n;        /* streams (one per shard) */
    struct stream *s;  /* streams */
    struct waiter *ws; /* one request per shard, reused */
    int dir;           /* +1 forward, -1 backward */
    int cur;           /* stream holding the current record, -1 when not on one */
    uint8_t *key_copy; /* copy of the current key (for direction changes) */
};

static void stream_load(struct stream *st)
{
    const uint8_t *p = st->buf + st->off;
    memcpy(&st->klen, p, 4);
    memcpy(&st->vlen, p + 4, 4);
    st->key = p + SHARD_SCAN_RECORD_HEADER;
    st->val = st->key + st->klen;
    st->on = true;
}

/* Take the answer of a read into the stream. */
static void stream_take(struct stream *st, struct shard_req *r)
{
    cs_mem_free(st->buf);
    st->buf = r->out;
    st->len = r->out_len;
    st->count = r->out_count;
    st->end = r->out_end;
    st->index = 0;
    st->off = 0;
    st->on = false;
    if (st->count)
        stream_load(st);
}

static void read_prepare(struct cs_cursor *c, unsigned i, enum shard_scan_mode mode,
                         const void *key, size_t klen)
{
    struct waiter *w = &c->ws[i];
    struct stream *st = &c->s[i];
    /* a seek followed by a few nexts reads little; a long scan grows its batches */
    if (mode == SCAN_GT || mode == SCAN_LT)
        st->batch = st->batch * 2 > CURSOR_BATCH_RECORDS ? CURSOR_BATCH_RECORDS : st->batch * 2;
    else
        st->batch = CURSOR_BATCH_FIRST;
    waiter_init(w, SHARD_SNAP_READ);
    w->req.snap = c->s[i].snap;
    w->req.scan_mode = (uint8_t)mode;
    w->req.key = key;
    w->req.klen = klen;
    w->req.scan_max = st->batch;
}

/* Position every stream with one read each (all shards in parallel). */
static int streams_reset(struct cs_cursor *c, enum shard_scan_mode mode, const void *key,
                         size_t klen)
{
    for (unsigned i = 0; i < c->n; i++) {
        if (!c->s[i].snap)
            continue;
        read_prepare(c, i, mode, key, klen);
        shard_submit(&c->db->shards[i], &c->ws[i].req);
    }
    int rc = 0;
    for (unsigned i = 0; i < c->n; i++) {
        if (!c->s[i].snap)
            continue;
        waiter_wait(&c->ws[i]);
        if (c->ws[i].req.rc && !rc)
            rc = c->ws[i].req.rc;
        if (!c->ws[i].req.rc)
            stream_take(&c->s[i], &c->ws[i].req);
        else
            c->s[i].on = false;
    }
    return rc;
}

/* Advance one stream in direction dir, fetching its next batch when this one is used up. */
static int stream_step(struct cs_cursor *c, unsigned i, int dir)
{
    struct stream *st = &c->s[i];
    cs_assert(st->on);
    if (st->index + 1 < st->count) {
        st->off += SHARD_SCAN_RECORD_HEADER + st->klen + st->vlen;
        st->index++;
        stream_load(st);
        return 0;
    }
    if (st->end) {
        st->on = false;
        return 0;
    }
    read_prepare(c, i, dir > 0 ? SCAN_GT : SCAN_LT, st->key, st->klen);
    int rc = db_call(c->db, i, &c->ws[i]);
    if (rc) {
        st->on = false;
        return rc;
    }
    stream_take(st, &c->ws[i].req);
    return 0;
}

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    int r = memcmp(a, b, alen < blen ? alen : blen);
    if (r)
        return r;
    return alen < blen ? -1 : alen > blen;
}

/* Pick the head in direction dir; remember its key. */
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
    if (best < 0)
        return CS_ENOTFOUND;
    memcpy(c->key_copy, c->s[best].key, c->s[best].klen);
    return 0;
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
    c->ws = calloc(c->n, sizeof(*c->ws));
    c->key_copy = malloc(CS_KEY_MAX);
    if (!c->s || !c->ws || !c->key_copy) {
        cs_cursor_close(c);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < c->n; i++) {
        waiter_init(&c->ws[i], SHARD_SNAP_OPEN);
        c->ws[i].req.coll = coll;
        c->ws[i].req.coll_len = nlen;
        shard_submit(&db->shards[i], &c->ws[i].req);
    }
    for (unsigned i = 0; i < c->n; i++) {
        waiter_wait(&c->ws[i]);
        if (c->ws[i].req.rc && !rc)
            rc = c->ws[i].req.rc;
        c->s[i].snap = c->ws[i].req.snap;
    }
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
    for (unsigned i = 0; c->s && i < c->n; i++) {
        cs_mem_free(c->s[i].buf);
        if (!c->s[i].snap)
            continue;
        waiter_init(&c->ws[i], SHARD_SNAP_CLOSE);
        c->ws[i].req.snap = c->s[i].snap;
        (void)db_call(c->db, i, &c->ws[i]);
    }
    free(c->s);
    free(c->ws);
    free(c->key_copy);
    free(c);
}

int cs_cursor_first(cs_cursor *c)
{
    if (!c)
        return CS_EINVAL;
    int rc = streams_reset(c, SCAN_FIRST, NULL, 0);
    return rc ? rc : pick(c, 1);
}

int cs_cursor_last(cs_cursor *c)
{
    if (!c)
        return CS_EINVAL;
    int rc = streams_reset(c, SCAN_LAST, NULL, 0);
    return rc ? rc : pick(c, -1);
}

int cs_cursor_seek(cs_cursor *c, const void *key, size_t klen)
{
    if (!c)
        return CS_EINVAL;
    int rc = db_check_key(key, klen);
    if (!rc)
        rc = streams_reset(c, SCAN_GE, key, klen);
    return rc ? rc : pick(c, 1);
}

static int move(cs_cursor *c, int dir)
{
    if (!c || c->cur < 0)
        return CS_EINVAL;
    int rc;
    if (c->dir == dir) {
        rc = stream_step(c, (unsigned)c->cur, dir);
    } else {
        size_t klen = c->s[c->cur].klen;
        rc = streams_reset(c, dir > 0 ? SCAN_GT : SCAN_LT, c->key_copy, klen);
    }
    if (rc) {
        c->cur = -1;
        return rc;
    }
    return pick(c, dir);
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
