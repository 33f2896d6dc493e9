/* Transactions: the caller's side (cs_txn_*), the coordinator of commits that span shards, and
 * the resolution of transactions a crash left in doubt. The shard's side is shards/txn.c; the
 * protocol is DESIGN.md §5.
 *
 * A transaction is optimistic. Writes are buffered in the handle (a later write of the same key
 * replaces an earlier one; reads see the buffered writes: read your own writes). A read of a key
 * not written records what it saw: absent, or the XXH3-128 of the value. Nothing is sent to a
 * shard until commit.
 *
 * COMMIT. The shards a transaction touches (written or read) are its participants.
 *   - One participant: one SHARD_TXN_COMMIT1 request: the shard validates the reads and applies
 *     the writes in one step, one WAL record (an atomic batch).
 *   - Several: every participant gets a SHARD_TXN_PREPARE at once (in parallel); each validates,
 *     locks and logs a PREPARE naming all participants into its next group-commit frame. When
 *     every vote is yes (every PREPARE durable), the transaction is committed: the state becomes
 *     COMMITTED (from then on shards answer gets with its writes) and SHARD_TXN_DECIDE installs
 *     the writes everywhere, in parallel. The caller is answered at the decision, before the
 *     installs finish (tc_decide says why every later read of its sees the transaction whole).
 *     One no vote (CS_ECONFLICT, or an error) aborts it: the yes voters release their locks. When
 *     the cause was an error (an I/O error, memory), the coordinator waits for the ABORT records
 *     to be durable before it returns, so that a crash cannot bring the transaction back (its
 *     PREPAREs may be on disk even where the fsync failed).
 *   - A blind write (writes only: cs_write of a batch over several shards, or a transaction that
 *     read nothing) refused for a conflict is run again at once as an ordered write: a new id,
 *     its PREPAREs sent one at a time in increasing shard order, each waiting for whatever holds
 *     its keys (TC_ORDERED). It is never refused for a conflict; engine/txn_core.h (ORDERED
 *     WRITES) says why it can neither deadlock nor starve. It costs one fsync per participant
 *     in sequence, paid only after a conflict.
 * Strict serializability: every read is validated on its shard while the participant holds the
 * transaction's locks, and locks are held from validation to the outcome on every participant,
 * so all reads still hold at the moment the last PREPARE becomes durable, which lies inside the
 * call of cs_txn_commit. A request of the participants that meets those locks waits for the
 * outcome, or is refused (shards/txn.c, WHO WAITS).
 *
 * IDS. A transaction id is a random 64-bit base drawn at open plus a counter: unique among the
 * transactions any log still holds (a collision needs 2^32 transactions at two opens whose bases
 * lie that close).
 *
 * RECOVERY (txn_recover, at open before the database serves): each shard reports the PREPAREs its
 * log holds without an outcome and the outcomes it holds; a transaction is committed if any
 * participant logged COMMIT, or if every participant it names holds its PREPARE; otherwise it is
 * aborted. The outcomes are installed and made durable before cs_open returns.
 *
 * READ-ONLY transactions (CS_TXN_READONLY) read a snapshot: at begin they pin every collection's
 * view on every shard, under the gate (below), so they see each cross-shard transaction whole or
 * not at all, never abort and never wait for more than installs under way (and, in sync mode,
 * the durability of what the snapshot holds). On each shard the views are pinned lock-free at
 * one moment (shard_view_pin_all); a shard whose views are not fresh is asked for private ones.
 * A begin costs a pin per collection and shard, and no request when the views are fresh.
 *
 * Transaction cursors (their walked ranges validated at commit) are engine/cursor.c's with
 * txn_cursor_range; asynchronous commit through sessions drives txn_commit_step (engine/session.c);
 * the change feed is engine/feed.c. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <xxhash.h>

#include "engine/db.h"
#include "engine/txn.h"
#include "engine/txn_core.h"
#include "io/fault.h"

#define TXN_MAGIC 0x63737478u /* "cstx": a live handle */
#define TXN_FREED 0x64656164u /* "dead": a freed one (debug builds check it) */

struct txn_entry {
    uint8_t type;       /* SHARD_BATCH_PUT, SHARD_BATCH_DEL */
    uint8_t coll_len;   /* name bytes */
    bool read;          /* a read (else a write) */
    bool present;       /* read: the key held a value */
    unsigned shard;     /* the key's shard */
    uint32_t klen;      /* key bytes */
    uint32_t vlen;      /* value bytes (writes) */
    uint64_t expire_ms; /* puts: the record's expiry (Unix ms), 0: none (clears it) */
    uint64_t hash[2];   /* read: XXH3-128 of the value seen */
    uint8_t *bytes;     /* name, key, value (one allocation) */
};

/* A read-only transaction's snapshot of one shard: the views of all its collections. */
struct ro_shard {
    struct shard_view **views; /* pinned; from malloc (shard_view_pin_all) or cs_mem (a request) */
    uint32_t n;                /* views */
    bool asked;                /* views came from SHARD_VIEW_PIN_ALL (release with cs_free) */
};

/* A range a transaction cursor walked (bounds copied into bytes). */
struct txn_range_e {
    unsigned shard;
    struct shard_txn_range r;
    uint8_t *bytes;
};

struct cs_txn {
    uint32_t magic;         /* TXN_MAGIC while usable */
    struct ro_shard *ro;    /* read-only: per shard, every collection's view, cut at begin */
    struct txn_range_e *rg; /* ranges transaction cursors walked */
    size_t nrg, cap_rg;
    cs_cursor *cursors;  /* open transaction cursors (read-write) */
    unsigned flags;      /* CS_TXN_* */
    cs_db *db;           /* its database */
    struct txn_entry *e; /* reads and writes, in order */
    uint32_t n, cap;     /* entries used, allocated */
    uint32_t *index;     /* open addressing over e by (collection, key, read/write) */
    uint32_t index_cap;  /* slots (power of two; 0: none yet) */
    uint64_t bytes;      /* key and value bytes held */
};

static void txn_check(const cs_txn *t)
{
    cs_assert(t->magic == TXN_MAGIC); /* a transaction used after commit or abort */
}

static void ro_release(cs_txn *t)
{
    for (unsigned i = 0; t->ro && i < t->db->nshards; i++) {
        struct ro_shard *r = &t->ro[i];
        for (uint32_t k = 0; k < r->n; k++)
            shard_view_unpin(t->db->shards[i], r->views[k]);
        if (r->asked)
            cs_free(r->views);
        else
            free(r->views);
        memset(r, 0, sizeof(*r));
    }
}

static void ro_unpin(void *arg)
{
    ro_release(arg);
}

/* Pin every collection on every shard: one cut, taken under the gate (see "the gate" below), so
 * the snapshot holds each cross-shard transaction whole or not at all. On each shard the views
 * are pinned at one moment (shard_view_pin_all), so a batch or transaction over several
 * collections of one shard is seen whole too. A shard whose published views are not fresh takes
 * private ones (one request; in sync mode answered once what they hold is durable). */
static int ro_pin(void *arg)
{
    cs_txn *t = arg;
    cs_db *db = t->db;
    unsigned n = db->nshards;
    struct waiter *ws = NULL; /* requests to the shards that missed */
    int rc = 0;
    for (unsigned i = 0; i < n && !rc; i++) {
        struct ro_shard *r = &t->ro[i];
        rc = shard_view_pin_all(db->shards[i], &r->views, &r->n);
        if (rc != SHARD_VIEW_MISS)
            continue;
        rc = 0;
        if (!ws && !(ws = calloc(n, sizeof(*ws)))) {
            rc = -ENOMEM;
            break;
        }
        waiter_init(&ws[i], SHARD_VIEW_PIN_ALL);
        shard_submit(db->shards[i], &ws[i].req);
    }
    for (unsigned i = 0; ws && i < n; i++) {
        if (!ws[i].req.done)
            continue; /* not asked */
        waiter_wait(&ws[i], true);
        if (ws[i].req.rc) {
            rc = rc ? rc : ws[i].req.rc;
            continue;
        }
        t->ro[i].views = ws[i].req.out;
        t->ro[i].n = ws[i].req.out_count;
        t->ro[i].asked = true;
    }
    free(ws);
    return rc;
}

/* The view of coll in the snapshot of shard, or NULL (absent there at begin). O(collections of
 * the shard). */
static struct shard_view *ro_view(const cs_txn *t, unsigned shard, const char *coll, size_t nlen)
{
    const struct ro_shard *r = &t->ro[shard];
    for (uint32_t i = 0; i < r->n; i++) {
        size_t len;
        const char *name = shard_view_name(r->views[i], &len);
        if (len == nlen && memcmp(name, coll, nlen) == 0)
            return r->views[i];
    }
    return NULL;
}

int cs_txn_begin(cs_db *db, unsigned flags, cs_txn **txn)
{
    if (!db || !txn || (flags & ~CS_TXN_READONLY))
        return CS_EINVAL;
    cs_txn *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->magic = TXN_MAGIC;
    t->flags = flags;
    t->db = db;
    if (flags & CS_TXN_READONLY) {
        int rc = (t->ro = calloc(db->nshards, sizeof(*t->ro))) ? 0 : -ENOMEM;
        if (!rc)
            rc = xgate_cut(db, ro_pin, ro_unpin, t);
        if (rc) {
            ro_release(t);
            free(t->ro);
            free(t);
            return rc;
        }
    }
    *txn = t;
    return 0;
}

/* Look key up in a read-only transaction's snapshot: 0 with a view of the value and its expiry,
 * or CS_ENOTFOUND (also when the collection did not exist at begin, or the record expired). */
static int ro_lookup(cs_txn *t, const char *coll, uint16_t nlen, const void *key, size_t klen,
                     const void **p, size_t *n, uint64_t *exp)
{
    struct shard_view *v = ro_view(t, db_shard_of(t->db, key, klen), coll, nlen);
    if (!v || btree_snap_get_exp(shard_view_snap(v), key, klen, p, n, exp) != 0 || cs_expired(*exp))
        return CS_ENOTFOUND;
    return 0;
}

/* A read of a read-only transaction: from its snapshot. */
static int ro_get(cs_txn *t, const char *coll, uint16_t nlen, const void *key, size_t klen,
                  void **val, size_t *vlen)
{
    const void *p;
    size_t n;
    uint64_t exp;
    if (ro_lookup(t, coll, nlen, key, klen, &p, &n, &exp) != 0)
        return CS_ENOTFOUND;
    if (n && !(*val = cs_mem_alloc(0, n)))
        return -ENOMEM;
    if (n)
        memcpy(*val, p, n);
    *vlen = n;
    return 0;
}

/* Open cursors record no more (their walks so far are handed over first); the first recording
 * error among them, or 0. */
static int detach_cursors(cs_txn *t)
{
    int rc = 0;
    while (t->cursors) {
        cs_cursor *c = t->cursors;
        t->cursors = cursor_next_of_txn(c);
        cursor_detach(c);
        if (!rc)
            rc = cursor_error(c);
    }
    return rc;
}

static void txn_free(cs_txn *t)
{
    (void)detach_cursors(t);
    for (size_t i = 0; i < t->nrg; i++)
        free(t->rg[i].bytes);
    free(t->rg);
    ro_release(t);
    free(t->ro);
    for (uint32_t i = 0; i < t->n; i++)
        free(t->e[i].bytes);
    free(t->e);
    free(t->index);
    t->magic = TXN_FREED;
    free(t);
}

void cs_txn_abort(cs_txn *t)
{
    if (!t)
        return;
    txn_check(t);
    txn_free(t);
}

/* ---- the entry index ---- */

static uint64_t entry_hash(const char *coll, size_t nlen, const void *key, size_t klen, bool read)
{
    return XXH3_64bits_withSeed(key, klen, XXH3_64bits(coll, nlen) + read);
}

static bool entry_is(const struct txn_entry *e, const char *coll, size_t nlen, const void *key,
                     size_t klen, bool read)
{
    return e->read == read && e->coll_len == nlen && e->klen == klen &&
           memcmp(e->bytes, coll, nlen) == 0 && memcmp(e->bytes + nlen, key, klen) == 0;
}

/* The slot of (coll, key, read) in the index: its entry index + 1, or 0 where it would go. */
static uint32_t *entry_slot(cs_txn *t, const char *coll, size_t nlen, const void *key, size_t klen,
                            bool read)
{
    uint32_t mask = t->index_cap - 1;
    for (uint32_t i = (uint32_t)entry_hash(coll, nlen, key, klen, read) & mask;; i = (i + 1) & mask)
        if (!t->index[i] || entry_is(&t->e[t->index[i] - 1], coll, nlen, key, klen, read))
            return &t->index[i];
}

static struct txn_entry *entry_find(cs_txn *t, const char *coll, size_t nlen, const void *key,
                                    size_t klen, bool read)
{
    if (!t->index_cap)
        return NULL;
    uint32_t s = *entry_slot(t, coll, nlen, key, klen, read);
    return s ? &t->e[s - 1] : NULL;
}

static int index_grow(cs_txn *t)
{
    if ((uint64_t)(t->n + 1) * 2 <= t->index_cap)
        return 0;
    uint32_t cap = t->index_cap ? t->index_cap * 2 : 64;
    uint32_t *old = t->index;
    t->index = calloc(cap, sizeof(*t->index));
    if (!t->index) {
        t->index = old;
        return -ENOMEM;
    }
    t->index_cap = cap;
    for (uint32_t i = 0; i < t->n; i++) {
        const struct txn_entry *e = &t->e[i];
        *entry_slot(t, (const char *)e->bytes, e->coll_len, e->bytes + e->coll_len, e->klen,
                    e->read) = i + 1;
    }
    free(old);
    return 0;
}

/* A new entry (or the existing write of the same key, replaced). */
static int entry_add(cs_txn *t, bool read, uint8_t type, const char *coll, size_t nlen,
                     const void *key, size_t klen, const void *val, size_t vlen,
                     struct txn_entry **out)
{
    struct txn_entry *old = entry_find(t, coll, nlen, key, klen, read);
    uint64_t bytes = t->bytes + klen + vlen - (old ? old->klen + old->vlen : 0);
    if (!old && t->n >= CS_TXN_OPS_MAX)
        return CS_EBATCH;
    if (bytes > CS_TXN_BYTES_MAX)
        return CS_EBATCH;
    uint8_t *b = malloc(nlen + klen + vlen + 1);
    if (!b)
        return -ENOMEM;
    memcpy(b, coll, nlen);
    memcpy(b + nlen, key, klen);
    if (vlen)
        memcpy(b + nlen + klen, val, vlen);
    struct txn_entry *e = old;
    if (!e) {
        if (index_grow(t)) {
            free(b);
            return -ENOMEM;
        }
        if (t->n == t->cap) {
            uint32_t cap = t->cap ? t->cap * 2 : 16;
            struct txn_entry *ne = realloc(t->e, cap * sizeof(*ne));
            if (!ne) {
                free(b);
                return -ENOMEM;
            }
            t->e = ne;
            t->cap = cap;
        }
        e = &t->e[t->n];
        memset(e, 0, sizeof(*e));
        *entry_slot(t, coll, nlen, key, klen, read) = ++t->n;
    } else {
        free(e->bytes);
    }
    e->read = read;
    e->type = type;
    e->coll_len = (uint8_t)nlen;
    e->klen = (uint32_t)klen;
    e->vlen = (uint32_t)vlen;
    e->bytes = b;
    e->shard = db_shard_of(t->db, key, klen);
    t->bytes = bytes;
    *out = e;
    return 0;
}

/* ---- reads and writes ---- */

/* A read of a read-write transaction: from the published view, or else from the shard, which
 * answers at once (read_now) instead of once what it read is durable. That is safe because the
 * read is validated at commit and the commit is answered only once the log of the key's shard
 * is durable past what the read saw: the shard is a participant (it validates the read), and its
 * answer waits for its own record, a PREPARE or the one-shard commit's (even without writes:
 * req_finish waits for everything applied before it), which follows that write in the log. So
 * no transaction that read a write lost in a crash is ever acknowledged; one that is refused
 * may have seen it (as it may see any value that its validation then finds changed). This
 * saves a fsync wait per read that misses the view, which under durable writes is most. */
static int txn_read(cs_db *db, const char *coll, uint16_t nlen, const void *key, size_t klen,
                    void **val, size_t *vlen)
{
    unsigned shard = db_shard_of(db, key, klen);
    int rc = shard_view_get(db->shards[shard], coll, nlen, key, klen, val, vlen);
    if (rc != SHARD_VIEW_MISS)
        return rc;
    struct waiter w;
    waiter_init(&w, SHARD_GET);
    w.req.coll = coll;
    w.req.coll_len = nlen;
    w.req.key = key;
    w.req.klen = klen;
    w.req.read_now = true;
    rc = db_call(db, shard, &w);
    if (rc)
        return rc;
    *val = w.req.out;
    *vlen = w.req.out_len;
    return 0;
}

/* The start of a read of key in t (cs_txn_get, cs_txn_get_expiry): checks the record's
 * arguments (*nlen: the collection name's length) and finds t's own write of the key (*own; NULL
 * if none, and always in a read-only transaction). */
static int txn_read_begin(cs_txn *t, const char *coll, const void *key, size_t klen, uint16_t *nlen,
                          const struct txn_entry **own)
{
    txn_check(t);
    *own = NULL;
    int rc = db_check_record(coll, key, klen, NULL, 0, nlen);
    if (rc == 0 && !(t->flags & CS_TXN_READONLY))
        *own = entry_find(t, coll, *nlen, key, klen, false);
    return rc;
}

int cs_txn_get(cs_txn *t, const char *coll, const void *key, size_t klen, void **val, size_t *vlen)
{
    if (!t || !val || !vlen)
        return CS_EINVAL;
    *val = NULL;
    *vlen = 0;
    uint16_t nlen;
    const struct txn_entry *w;
    int rc = txn_read_begin(t, coll, key, klen, &nlen, &w);
    if (rc)
        return rc;
    if (t->flags & CS_TXN_READONLY)
        return ro_get(t, coll, nlen, key, klen, val, vlen);
    if (w) { /* its own write */
        if (w->type == SHARD_BATCH_DEL || cs_expired(w->expire_ms))
            return CS_ENOTFOUND;
        if (w->vlen && !(*val = cs_mem_alloc(0, w->vlen)))
            return -ENOMEM;
        if (w->vlen)
            memcpy(*val, w->bytes + w->coll_len + w->klen, w->vlen);
        *vlen = w->vlen;
        return 0;
    }
    rc = txn_read(t->db, coll, nlen, key, klen, val, vlen);
    if (rc && rc != CS_ENOTFOUND)
        return rc;
    if (entry_find(t, coll, nlen, key, klen, true))
        return rc; /* validated against what the first read saw */
    struct txn_entry *e;
    int arc = entry_add(t, true, 0, coll, nlen, key, klen, NULL, 0, &e);
    if (arc) {
        cs_free(*val);
        *val = NULL;
        *vlen = 0;
        return arc;
    }
    e->present = rc == 0;
    if (e->present) {
        XXH128_hash_t h = XXH3_128bits(*val, *vlen);
        e->hash[0] = h.low64;
        e->hash[1] = h.high64;
    }
    return rc;
}

static int txn_write(cs_txn *t, uint8_t type, const char *coll, const void *key, size_t klen,
                     const void *val, size_t vlen, uint64_t expire_ms)
{
    if (!t)
        return CS_EINVAL;
    txn_check(t);
    if (t->flags & CS_TXN_READONLY)
        return CS_EINVAL;
    uint16_t nlen;
    int rc = db_check_record(coll, key, klen, val, vlen, &nlen);
    if (!rc)
        rc = db_check_expiry(expire_ms);
    if (rc)
        return rc;
    struct txn_entry *e;
    rc = entry_add(t, false, type, coll, nlen, key, klen, val, vlen, &e);
    if (!rc)
        e->expire_ms = expire_ms;
    return rc;
}

int cs_txn_put(cs_txn *t, const char *coll, const void *key, size_t klen, const void *val,
               size_t vlen)
{
    return txn_write(t, SHARD_BATCH_PUT, coll, key, klen, val, vlen, 0);
}

int cs_txn_put_ttl(cs_txn *t, const char *coll, const void *key, size_t klen, const void *val,
                   size_t vlen, uint64_t expire_at_ms)
{
    return txn_write(t, SHARD_BATCH_PUT, coll, key, klen, val, vlen, expire_at_ms);
}

int cs_txn_del(cs_txn *t, const char *coll, const void *key, size_t klen)
{
    return txn_write(t, SHARD_BATCH_DEL, coll, key, klen, NULL, 0, 0);
}

/* Not recorded as a read: the value's read (cs_txn_get) is what commit validates. */
int cs_txn_get_expiry(cs_txn *t, const char *coll, const void *key, size_t klen,
                      uint64_t *expire_at_ms)
{
    if (!t || !expire_at_ms)
        return CS_EINVAL;
    *expire_at_ms = 0;
    uint16_t nlen;
    const struct txn_entry *w;
    int rc = txn_read_begin(t, coll, key, klen, &nlen, &w);
    if (rc)
        return rc;
    if (t->flags & CS_TXN_READONLY) {
        const void *p;
        size_t n;
        return ro_lookup(t, coll, nlen, key, klen, &p, &n, expire_at_ms);
    }
    if (w) { /* its own write */
        if (w->type == SHARD_BATCH_DEL || cs_expired(w->expire_ms))
            return CS_ENOTFOUND;
        *expire_at_ms = w->expire_ms;
        return 0;
    }
    return cs_get_expiry(t->db, coll, key, klen, expire_at_ms);
}

/* ---- transaction cursors ---- */

int txn_cursor_range(cs_txn *t, unsigned shard, const struct shard_txn_range *r)
{
    if (t->n + t->nrg >= CS_TXN_OPS_MAX)
        return CS_EBATCH;
    if (t->nrg == t->cap_rg) {
        size_t cap = t->cap_rg ? t->cap_rg * 2 : 8;
        struct txn_range_e *n = realloc(t->rg, cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        t->rg = n;
        t->cap_rg = cap;
    }
    size_t bytes = (size_t)r->coll_len + r->lo_len + r->hi_len;
    uint8_t *b = malloc(bytes ? bytes : 1);
    if (!b)
        return -ENOMEM;
    struct txn_range_e *e = &t->rg[t->nrg++];
    e->shard = shard;
    e->bytes = b;
    e->r = *r;
    memcpy(b, r->coll, r->coll_len);
    e->r.coll = (const char *)b;
    b += r->coll_len;
    if (r->lo_len)
        memcpy(b, r->lo, r->lo_len);
    e->r.lo = b;
    b += r->lo_len;
    if (r->hi_len)
        memcpy(b, r->hi, r->hi_len);
    e->r.hi = b;
    return 0;
}

void txn_cursor_closed(cs_txn *t, cs_cursor *c)
{
    cs_cursor *prev = NULL;
    for (cs_cursor *x = t->cursors; x; prev = x, x = cursor_next_of_txn(x))
        if (x == c) {
            if (prev)
                cursor_set_next_of_txn(prev, cursor_next_of_txn(x));
            else
                t->cursors = cursor_next_of_txn(x);
            return;
        }
}

static int ov_cmp(const void *a, const void *b)
{
    const struct txn_entry *x = *(const struct txn_entry *const *)a;
    const struct txn_entry *y = *(const struct txn_entry *const *)b;
    const uint8_t *xk = x->bytes + x->coll_len, *yk = y->bytes + y->coll_len;
    int c = memcmp(xk, yk, x->klen < y->klen ? x->klen : y->klen);
    return c ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

int cs_txn_cursor_open(cs_txn *t, const char *coll, cs_cursor **out)
{
    if (!t || !out)
        return CS_EINVAL;
    txn_check(t);
    *out = NULL;
    uint16_t nlen;
    int rc = db_check_name(coll, &nlen);
    if (rc)
        return rc;
    cs_db *db = t->db;
    if (t->flags & CS_TXN_READONLY) {
        struct shard_view **views = calloc(db->nshards, sizeof(*views));
        if (!views)
            return -ENOMEM;
        for (unsigned i = 0; i < db->nshards; i++)
            views[i] = ro_view(t, i, coll, nlen);
        rc = cursor_open_txn(db, coll, nlen, t, views, NULL, 0, out);
        free(views);
        return rc;
    }
    /* the transaction's own writes to coll, sorted by key, copied for the cursor */
    size_t n = 0;
    for (uint32_t i = 0; i < t->n; i++)
        n += !t->e[i].read && t->e[i].coll_len == nlen && memcmp(t->e[i].bytes, coll, nlen) == 0;
    const struct txn_entry **sorted = malloc((n ? n : 1) * sizeof(*sorted));
    struct cursor_ov *ov = cursor_ov_new(n);
    if (!sorted || !ov) {
        free(sorted);
        free(ov);
        return -ENOMEM;
    }
    size_t k = 0;
    for (uint32_t i = 0; i < t->n; i++)
        if (!t->e[i].read && t->e[i].coll_len == nlen && memcmp(t->e[i].bytes, coll, nlen) == 0)
            sorted[k++] = &t->e[i];
    qsort(sorted, n, sizeof(*sorted), ov_cmp);
    for (size_t i = 0; i < n; i++) {
        const struct txn_entry *e = sorted[i];
        uint8_t *key = malloc(e->klen), *val = e->vlen ? malloc(e->vlen) : NULL;
        if (!key || (e->vlen && !val)) {
            free(key);
            free(val);
            free(sorted);
            cursor_ov_free(ov, i); /* what was copied so far */
            return -ENOMEM;
        }
        memcpy(key, e->bytes + e->coll_len, e->klen);
        if (e->vlen)
            memcpy(val, e->bytes + e->coll_len + e->klen, e->vlen);
        cursor_ov_set(ov, i, key, e->klen, val, e->vlen, e->type == SHARD_BATCH_DEL);
    }
    free(sorted);
    rc = cursor_open_txn(db, coll, nlen, t, NULL, ov, n, out); /* takes ov */
    if (rc)
        return rc;
    cursor_set_next_of_txn(*out, t->cursors);
    t->cursors = *out;
    return 0;
}

/* ---- the gate between cross-shard installs and readers that cut several shards ----
 * A cross-shard commit holds the gate (shared with other commits) from its decision to its last
 * install, which may come after its caller was answered: the last install's completion leaves
 * the gate, on a shard thread (a mutex held for a few instructions: it never waits for the gate
 * itself); a cursor holds it (shared with other cursors) while it pins its views. Cursors that
 * wait keep new commits from entering (so a steady stream of commits cannot starve them); they
 * wait only for installs under way (microseconds: an install waits for no disk). Nothing is paid
 * until the first cross-shard commit: before it, cursors pin ungated and check afterwards. */

static void xgate_commit_enter(cs_db *db)
{
    struct xgate *g = &db->xgate;
    atomic_store(&db->xshard_used, 1);
    pthread_mutex_lock(&g->mu);
    while (g->pinning || g->waiting)
        pthread_cond_wait(&g->cv, &g->mu);
    g->installing++;
    pthread_mutex_unlock(&g->mu);
}

/* xgate_commit_enter without waiting: false when it would wait. */
static bool xgate_commit_try(cs_db *db)
{
    struct xgate *g = &db->xgate;
    atomic_store(&db->xshard_used, 1);
    pthread_mutex_lock(&g->mu);
    bool ok = !g->pinning && !g->waiting;
    if (ok)
        g->installing++;
    pthread_mutex_unlock(&g->mu);
    return ok;
}

static void xgate_commit_exit(cs_db *db)
{
    struct xgate *g = &db->xgate;
    pthread_mutex_lock(&g->mu);
    if (--g->installing == 0)
        pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static bool xgate_pin_begin(cs_db *db)
{
    if (db->nshards < 2 || !atomic_load(&db->xshard_used))
        return false;
    struct xgate *g = &db->xgate;
    pthread_mutex_lock(&g->mu);
    g->waiting++;
    while (g->installing)
        pthread_cond_wait(&g->cv, &g->mu);
    g->waiting--;
    g->pinning++;
    pthread_mutex_unlock(&g->mu);
    return true;
}

static void xgate_pin_end(cs_db *db, bool gated)
{
    if (!gated)
        return;
    struct xgate *g = &db->xgate;
    pthread_mutex_lock(&g->mu);
    if (--g->pinning == 0)
        pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

int xgate_cut(cs_db *db, int (*pin)(void *arg), void (*unpin)(void *arg), void *arg)
{
    bool gated = xgate_pin_begin(db);
    int rc = pin(arg);
    if (!rc && !gated && db->nshards > 1 && atomic_load(&db->xshard_used)) {
        unpin(arg); /* a cross-shard commit was decided meanwhile: cut again, gated */
        gated = xgate_pin_begin(db);
        rc = pin(arg);
    }
    xgate_pin_end(db, gated);
    return rc;
}

/* ---- commit ---- */

static uint64_t txn_new_id(cs_db *db)
{
    uint64_t id;
    do
        id = db->txn_base + atomic_fetch_add_explicit(&db->txn_next, 1, memory_order_relaxed);
    while (id == 0);
    return id;
}

/* What every participant is sent: its writes and reads, laid out by shard. */
struct txn_plan {
    unsigned nparts;
    unsigned *shard_part; /* per shard: participant index + 1, or 0 */
    struct txn_part_plan {
        unsigned shard;
        struct shard_batch_op *ops; /* its writes */
        size_t nops;
        struct shard_txn_read *reads; /* its reads */
        size_t nreads;
        struct shard_txn_range *ranges; /* its ranges */
        size_t nranges;
    } * p;
    struct shard_batch_op *ops;     /* all writes, grouped by participant */
    struct shard_txn_read *reads;   /* all reads, grouped by participant */
    struct shard_txn_range *ranges; /* all ranges, grouped by participant */
};

static void plan_free(struct txn_plan *pl)
{
    free(pl->shard_part);
    free(pl->p);
    free(pl->ops);
    free(pl->reads);
    free(pl->ranges);
}

static int plan_make(cs_db *db, const struct txn_op *ops, size_t nops, const struct txn_rd *rds,
                     size_t nreads, const struct txn_rg *rgs, size_t nrg, struct txn_plan *pl)
{
    memset(pl, 0, sizeof(*pl));
    pl->shard_part = calloc(db->nshards, sizeof(unsigned));
    pl->p = calloc(db->nshards, sizeof(*pl->p));
    pl->ops = malloc((nops ? nops : 1) * sizeof(*pl->ops));
    pl->reads = malloc((nreads ? nreads : 1) * sizeof(*pl->reads));
    pl->ranges = malloc((nrg ? nrg : 1) * sizeof(*pl->ranges));
    if (!pl->shard_part || !pl->p || !pl->ops || !pl->reads || !pl->ranges) {
        plan_free(pl);
        return -ENOMEM;
    }
    /* participants in shard order (a PREPARE names them increasing) */
    for (size_t i = 0; i < nops; i++)
        pl->shard_part[ops[i].shard] = 1;
    for (size_t i = 0; i < nreads; i++)
        pl->shard_part[rds[i].shard] = 1;
    for (size_t i = 0; i < nrg; i++)
        pl->shard_part[rgs[i].shard] = 1;
    for (unsigned s = 0; s < db->nshards; s++)
        if (pl->shard_part[s]) {
            pl->p[pl->nparts].shard = s;
            pl->shard_part[s] = ++pl->nparts;
        }
    for (size_t i = 0; i < nops; i++)
        pl->p[pl->shard_part[ops[i].shard] - 1].nops++;
    for (size_t i = 0; i < nreads; i++)
        pl->p[pl->shard_part[rds[i].shard] - 1].nreads++;
    for (size_t i = 0; i < nrg; i++)
        pl->p[pl->shard_part[rgs[i].shard] - 1].nranges++;
    size_t o = 0, r = 0, g = 0;
    for (unsigned i = 0; i < pl->nparts; i++) {
        pl->p[i].ops = pl->ops + o;
        pl->p[i].reads = pl->reads + r;
        pl->p[i].ranges = pl->ranges + g;
        o += pl->p[i].nops;
        r += pl->p[i].nreads;
        g += pl->p[i].nranges;
        pl->p[i].nops = pl->p[i].nreads = pl->p[i].nranges = 0;
    }
    for (size_t i = 0; i < nops; i++) {
        struct txn_part_plan *pp = &pl->p[pl->shard_part[ops[i].shard] - 1];
        pp->ops[pp->nops++] = ops[i].op;
    }
    for (size_t i = 0; i < nreads; i++) {
        struct txn_part_plan *pp = &pl->p[pl->shard_part[rds[i].shard] - 1];
        pp->reads[pp->nreads++] = rds[i].rd;
    }
    for (size_t i = 0; i < nrg; i++) {
        struct txn_part_plan *pp = &pl->p[pl->shard_part[rgs[i].shard] - 1];
        pp->ranges[pp->nranges++] = rgs[i].rg;
    }
    return 0;
}

/* Submit every waiter, then wait for all. */
static void call_all(cs_db *db, struct waiter *ws, const unsigned *shards, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        shard_submit(db->shards[shards[i]], &ws[i].req);
    for (unsigned i = 0; i < n; i++)
        waiter_wait(&ws[i], false);
}

/* A commit in flight: the steps above as a state machine, so that a blocking caller and a
 * session drive the same code. Its requests complete on shard threads; the last one of a phase
 * only calls notify (which must only signal); txn_commit_step then runs the next step on the
 * driver's thread (the decision may wait at the gate, which a shard thread must never do). */
enum tc_phase { TC_START, TC_ONE, TC_VOTING, TC_ORDERED, TC_INSTALLING, TC_DONE };

struct txn_commit {
    cs_db *db;
    struct txn_plan pl; /* participants, their writes and reads */
    cs_txn *t;          /* the transaction whose buffers the plan points into, or NULL */
    struct txn_op *ops; /* built from t (owned), or NULL */
    struct txn_rd *rds;
    struct shard_txn *x;    /* several participants: the shared state */
    struct shard_req *reqs; /* one per participant */
    _Atomic unsigned left;  /* requests of the phase still out */
    enum tc_phase phase;
    bool commit;               /* the decision */
    bool failed;               /* a vote was an error: the abort must be durable */
    int rc;                    /* the answer */
    bool nowait;               /* txn_commit_nowait: never wait at the gate */
    bool blind;                /* writes, and no reads or ranges: never refused for a conflict */
    bool ordered;              /* running as an ordered write (its second attempt) */
    unsigned next;             /* ordered: the participant whose PREPARE is out */
    bool later;                /* the decision found the gate closed: step again later */
    void (*notify)(void *arg); /* a phase is complete (shard thread: signal only) */
    void *arg;
    uint64_t start_ns; /* when the first step ran (the commit's latency runs from there) */
};

static void tc_req_done(struct shard_req *r)
{
    struct txn_commit *c = r->owner;
    if (atomic_fetch_sub_explicit(&c->left, 1, memory_order_acq_rel) == 1)
        c->notify(c->arg);
}

static void tc_submit(struct txn_commit *c, unsigned n)
{
    atomic_store_explicit(&c->left, n, memory_order_release);
    for (unsigned i = 0; i < n; i++)
        shard_submit(c->db->shards[c->pl.p[i].shard], &c->reqs[i]);
}

static struct shard_req *tc_req(struct txn_commit *c, unsigned i, enum shard_op op)
{
    struct shard_req *r = &c->reqs[i];
    memset(r, 0, sizeof(*r));
    r->op = (uint8_t)op;
    r->done = tc_req_done;
    r->owner = c;
    return r;
}

/* A new shared state (a new id) and a PREPARE request per participant. */
static int tc_prepares(struct txn_commit *c, bool ordered)
{
    unsigned n = c->pl.nparts;
    struct shard_txn *x = calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    x->id = txn_new_id(c->db);
    x->state = SHARD_TXN_PENDING;
    x->refs = 1;
    x->unsettled = n;
    x->nparts = (uint16_t)n;
    x->ordered = ordered;
    shard_txn_unref(c->x); /* a first attempt's: its tail holds its own reference */
    c->x = x;
    for (unsigned i = 0; i < n; i++) {
        x->parts[i] = (uint16_t)c->pl.p[i].shard;
        struct shard_req *r = tc_req(c, i, SHARD_TXN_PREPARE);
        r->txn = x;
        r->ops = c->pl.p[i].ops;
        r->nops = c->pl.p[i].nops;
        r->reads = c->pl.p[i].reads;
        r->nreads = c->pl.p[i].nreads;
        r->ranges = c->pl.p[i].ranges;
        r->nranges = c->pl.p[i].nranges;
    }
    return 0;
}

static int tc_start(struct txn_commit *c)
{
    unsigned n = c->pl.nparts;
    if (n == 0)
        return 0;
    if (n > WAL_TXN_PARTS_MAX)
        return CS_EBATCH;
    c->reqs = calloc(n, sizeof(*c->reqs));
    if (!c->reqs)
        return -ENOMEM;
    if (n == 1) {
        struct shard_req *r = tc_req(c, 0, SHARD_TXN_COMMIT1);
        r->ops = c->pl.p[0].ops;
        r->nops = c->pl.p[0].nops;
        r->reads = c->pl.p[0].reads;
        r->nreads = c->pl.p[0].nreads;
        r->ranges = c->pl.p[0].ranges;
        r->nranges = c->pl.p[0].nranges;
        c->phase = TC_ONE;
        tc_submit(c, 1);
        return 0;
    }
    int rc = tc_prepares(c, false);
    if (rc)
        return rc;
    c->phase = TC_VOTING;
    tc_submit(c, n);
    return 0;
}

/* Run again as an ordered write (txn_core.h, ORDERED WRITES): a new id, and the PREPAREs one at
 * a time in increasing shard order (the plan lists the participants so), each sent once the one
 * before is durable. */
static int tc_order(struct txn_commit *c)
{
    int rc = tc_prepares(c, true);
    if (rc)
        return rc;
    c->ordered = true;
    c->next = 0;
    c->phase = TC_ORDERED;
    atomic_store_explicit(&c->left, 1, memory_order_release);
    shard_submit(c->db->shards[c->pl.p[0].shard], &c->reqs[0]);
    return 0;
}

/* The ordered PREPARE of participant c->next is in: send the next one, or decide. */
static void tc_ordered_step(struct txn_commit *c)
{
    unsigned n = c->pl.nparts;
    int vote = c->reqs[c->next].rc;
    cs_assert(vote != CS_ECONFLICT); /* an ordered PREPARE is refused only for an error */
    if (++c->next < n && !vote) {
        atomic_store_explicit(&c->left, 1, memory_order_release);
        shard_submit(c->db->shards[c->pl.p[c->next].shard], &c->reqs[c->next]);
        return;
    }
    for (unsigned i = c->next; i < n; i++)
        c->reqs[i].rc = vote; /* never sent: the same no vote */
    c->phase = TC_VOTING;
}

/* The outcome on its way to the participants once the caller has its answer (the answer does
 * not wait for the installs): the SHARD_TXN_DECIDE requests, which the shards complete; the last
 * one leaves the gate (a commit) and frees the tail, on a shard thread. */
struct txn_tail {
    cs_db *db;
    struct shard_txn *x;   /* referenced */
    bool commit;           /* it holds the gate (xgate_commit_enter) until the last install */
    _Atomic unsigned left; /* requests still out */
    struct shard_req reqs[];
};

static void tail_req_done(struct shard_req *r)
{
    struct txn_tail *tl = r->owner;
    if (atomic_fetch_sub_explicit(&tl->left, 1, memory_order_acq_rel) != 1)
        return;
    if (tl->commit)
        xgate_commit_exit(tl->db); /* a mutex held for a few instructions: no waiting */
    shard_txn_unref(tl->x);
    free(tl);
}

/* Send the outcome through a tail: the caller may be answered at once. False when the tail
 * cannot be allocated (the outcome is then sent the blocking way). */
static bool tc_send_tail(struct txn_commit *c)
{
    unsigned n = c->pl.nparts;
    struct txn_tail *tl = calloc(1, sizeof(*tl) + n * sizeof(tl->reqs[0]));
    if (!tl)
        return false;
    tl->db = c->db;
    tl->x = c->x;
    tl->commit = c->commit;
    __atomic_add_fetch(&c->x->refs, 1, __ATOMIC_ACQ_REL);
    atomic_store_explicit(&tl->left, n, memory_order_release);
    unsigned shards[WAL_TXN_PARTS_MAX];
    for (unsigned i = 0; i < n; i++) {
        struct shard_req *r = &tl->reqs[i];
        r->op = SHARD_TXN_DECIDE;
        r->done = tail_req_done;
        r->owner = tl;
        r->txn = c->x;
        r->commit = c->commit;
        shards[i] = c->pl.p[i].shard;
    }
    cs_db *db = c->db;
    for (unsigned i = 0; i < n; i++) /* tl may be freed by the last completion: locals only */
        shard_submit(db->shards[shards[i]], &tl->reqs[i]);
    return true;
}

/* Every vote is in: decide, and send the outcome to every participant. The caller is answered
 * at the decision (TC_DONE at once) unless a vote was an error (the ABORT must be durable
 * first): every later request of the caller, or of anyone it tells, reaches each participant
 * after the outcome (a shard's inbox is FIFO), a lock-free get of a written key misses its view
 * until the install (intent slots), and cursors and read-only transactions cut under the gate,
 * which the commit holds until its last install. */
static void tc_decide(struct txn_commit *c)
{
    unsigned n = c->pl.nparts;
    struct txn_votes votes;
    txn_votes_init(&votes, n);
    for (unsigned i = 0; i < n; i++)
        txn_votes_add(&votes, c->reqs[i].rc);
    c->rc = txn_votes_decide(&votes, &c->commit, &c->failed);
    c->later = false;
    if (c->commit && c->nowait && !xgate_commit_try(c->db)) {
        c->later = true; /* the votes stay as they are: decided again at the next step */
        return;
    }
    if (c->commit && !c->nowait)
        xgate_commit_enter(c->db);
    int die =
        io_fault_on_txn_decide(c->db->fault); /* fault plan: die with every PREPARE in doubt */
    for (unsigned i = 0; die == 2 && i < n; i++) {
        struct waiter w;
        waiter_init(&w, SHARD_CHECKPOINT);
        (void)db_call(c->db, c->pl.p[i].shard, &w);
    }
    if (die)
        raise(SIGKILL);
    __atomic_store_n(&c->x->state, c->commit ? SHARD_TXN_COMMITTED : SHARD_TXN_ABORTED,
                     __ATOMIC_RELEASE);
    if (!c->failed && tc_send_tail(c)) {
        c->phase = TC_DONE;
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        struct shard_req *r = tc_req(c, i, SHARD_TXN_DECIDE);
        r->txn = c->x;
        r->commit = c->commit;
        r->txn_sync = c->failed;
    }
    c->phase = TC_INSTALLING;
    tc_submit(c, n);
}

/* The commit has its answer: its latency, from the first step to this one, goes to the
 * histogram of its first participant (the lowest shard index, as txn_cross_commits counts it),
 * whatever the answer. A commit with no participant (nothing read or written) is not recorded. */
static void tc_record(struct txn_commit *c)
{
    if (c->pl.nparts == 0)
        return;
    uint64_t now_ns = cs_now_ns();
    hist_record_mw(&c->db->metrics[c->pl.p[0].shard].commit,
                   now_ns > c->start_ns ? now_ns - c->start_ns : 0);
}

/* A blind write refused for a conflict (its abort is on its way) runs again, ordered. */
static void tc_retry_ordered(struct txn_commit *c)
{
    if (c->phase != TC_DONE || !txn_retry_ordered(c->blind, c->ordered, c->pl.nparts, c->rc))
        return;
    c->rc = tc_order(c);
    if (c->rc)
        c->phase = TC_DONE;
}

int txn_commit_step(struct txn_commit *c, int *rc)
{
    bool was_done = c->phase == TC_DONE;
    switch (c->phase) {
    case TC_START:
        c->start_ns = cs_now_ns();
        c->rc = tc_start(c);
        if (c->rc || c->phase == TC_START)
            c->phase = TC_DONE;
        break;
    case TC_ONE:
        c->rc = c->reqs[0].rc;
        c->phase = TC_DONE;
        break;
    case TC_ORDERED:
        tc_ordered_step(c);
        if (c->phase == TC_ORDERED)
            break;
        __attribute__((fallthrough)); /* every vote is in */
    case TC_VOTING:
        tc_decide(c);
        if (c->later) {
            *rc = 0;
            return TXN_STEP_LATER;
        }
        tc_retry_ordered(c);
        break;
    case TC_INSTALLING:
        if (c->commit)
            xgate_commit_exit(c->db);
        /* committed: an install that failed fenced its shard, whose next open installs it */
        c->phase = TC_DONE;
        tc_retry_ordered(c);
        break;
    case TC_DONE:
        break;
    }
    if (!was_done && c->phase == TC_DONE)
        tc_record(c);
    *rc = c->rc;
    return c->phase != TC_DONE;
}

void txn_commit_free(struct txn_commit *c)
{
    if (!c)
        return;
    cs_assert(c->phase == TC_DONE);
    shard_txn_unref(c->x);
    free(c->reqs);
    plan_free(&c->pl);
    free(c->ops);
    free(c->rds);
    if (c->t)
        txn_free(c->t);
    free(c);
}

static int tc_new(cs_db *db, const struct txn_op *ops, size_t nops, const struct txn_rd *rds,
                  size_t nreads, const struct txn_rg *rgs, size_t nrg, void (*notify)(void *),
                  void *arg, struct txn_commit **out)
{
    struct txn_commit *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->db = db;
    c->notify = notify;
    c->arg = arg;
    c->blind = nops && !nreads && !nrg;
    int rc = nops || nreads || nrg ? plan_make(db, ops, nops, rds, nreads, rgs, nrg, &c->pl) : 0;
    if (rc) {
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* ---- driving a commit from a blocking call ---- */

struct tc_wait {
    _Atomic uint32_t word; /* phases completed */
};

static void tc_wake(void *arg)
{
    struct tc_wait *w = arg;
    atomic_fetch_add_explicit(&w->word, 1, memory_order_release);
    syscall(SYS_futex, &w->word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Wait until w->word moves past seen. A phase waits for a disk flush (the votes) or for the
 * shards' installs: as a blocking durable write does (engine/db.c: waiter_yield), a caller
 * gives the CPU away with sched_yield for up to wait_yield_us before it sleeps, so that its CPU
 * stays awake for the answer, but only while it is the one commit waiting: with others waiting
 * too, the CPU has their work to do, and yielding only spins through the scheduler (with 64
 * blocking transfers on two cores it cost a tenth of the CPU), so it sleeps at once. */
static void tc_wait_phase(cs_db *db, struct tc_wait *w, uint32_t seen)
{
    bool alone = atomic_fetch_add_explicit(&db->txn_waiters, 1, memory_order_relaxed) == 0;
    if (alone && db->opt.durability == SHARD_SYNC && db->opt.wait_yield_us &&
        atomic_fetch_add_explicit(&db->yielders, 1, memory_order_relaxed) == 0) {
        uint64_t end = cs_now_ns() + (uint64_t)db->opt.wait_yield_us * 1000u;
        for (unsigned i = 1; atomic_load_explicit(&w->word, memory_order_acquire) == seen; i++) {
            sched_yield();
            if ((i & 15u) == 0 &&
                (cs_now_ns() >= end ||
                 atomic_load_explicit(&db->txn_waiters, memory_order_relaxed) > 1))
                break;
        }
        atomic_fetch_sub_explicit(&db->yielders, 1, memory_order_relaxed);
    } else if (alone && db->opt.durability == SHARD_SYNC && db->opt.wait_yield_us) {
        atomic_fetch_sub_explicit(&db->yielders, 1, memory_order_relaxed);
    }
    while (atomic_load_explicit(&w->word, memory_order_acquire) == seen)
        syscall(SYS_futex, &w->word, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
    atomic_fetch_sub_explicit(&db->txn_waiters, 1, memory_order_relaxed);
}

static int tc_run(struct txn_commit *c, struct tc_wait *w)
{
    int rc;
    for (uint32_t seen = 0; txn_commit_step(c, &rc); seen++)
        tc_wait_phase(c->db, w, seen);
    return rc;
}

int txn_commit_ops(cs_db *db, const struct txn_op *ops, size_t nops, const struct txn_rd *rds,
                   size_t nreads)
{
    struct tc_wait w = {0};
    struct txn_commit *c;
    int rc = tc_new(db, ops, nops, rds, nreads, NULL, 0, tc_wake, &w, &c);
    if (rc)
        return rc;
    rc = tc_run(c, &w);
    txn_commit_free(c);
    return rc;
}

/* Build the commit of t (its reads and writes as the participants' requests). */
static int tc_of_txn(cs_txn *t, void (*notify)(void *), void *arg, struct txn_commit **out)
{
    int crc = detach_cursors(t); /* their walks become ranges now */
    if (crc)
        return crc;
    size_t nops = 0, nreads = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        nreads += t->e[i].read;
        nops += !t->e[i].read;
    }
    struct txn_op *ops = malloc((nops ? nops : 1) * sizeof(*ops));
    struct txn_rd *rds = malloc((nreads ? nreads : 1) * sizeof(*rds));
    if (!ops || !rds) {
        free(ops);
        free(rds);
        return -ENOMEM;
    }
    size_t o = 0, r = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        const struct txn_entry *e = &t->e[i];
        const char *coll = (const char *)e->bytes;
        const uint8_t *key = e->bytes + e->coll_len;
        if (e->read)
            rds[r++] = (struct txn_rd){.shard = e->shard,
                                       .rd = {.coll_len = e->coll_len,
                                              .present = e->present,
                                              .coll = coll,
                                              .key = key,
                                              .klen = e->klen,
                                              .hash = {e->hash[0], e->hash[1]}}};
        else
            ops[o++] = (struct txn_op){.shard = e->shard,
                                       .op = {.type = e->type,
                                              .coll_len = e->coll_len,
                                              .coll = coll,
                                              .key = key,
                                              .klen = e->klen,
                                              .val = key + e->klen,
                                              .vlen = e->vlen,
                                              .expire_ms = e->expire_ms}};
    }
    struct txn_rg *rgs = malloc((t->nrg ? t->nrg : 1) * sizeof(*rgs));
    if (!rgs) {
        free(ops);
        free(rds);
        return -ENOMEM;
    }
    for (size_t i = 0; i < t->nrg; i++)
        rgs[i] = (struct txn_rg){.shard = t->rg[i].shard, .rg = t->rg[i].r};
    int rc = tc_new(t->db, ops, nops, rds, nreads, rgs, t->nrg, notify, arg, out);
    free(rgs); /* the plan copied the structs */
    if (rc) {
        free(ops);
        free(rds);
        return rc;
    }
    (*out)->ops = ops; /* the plan copied the structs; the bytes stay in t until the end */
    (*out)->rds = rds;
    (*out)->t = t;
    return 0;
}

void txn_commit_nowait(struct txn_commit *c)
{
    c->nowait = true;
}

int txn_commit_new(cs_txn *t, void (*notify)(void *arg), void *arg, struct txn_commit **out)
{
    if (!t || !out)
        return CS_EINVAL;
    txn_check(t);
    int rc = tc_of_txn(t, notify, arg, out);
    if (rc)
        txn_free(t);
    return rc;
}

int cs_txn_commit(cs_txn *t)
{
    if (!t)
        return CS_EINVAL;
    struct tc_wait w = {0};
    struct txn_commit *c;
    int rc = txn_commit_new(t, tc_wake, &w, &c);
    if (rc)
        return rc;
    rc = tc_run(c, &w);
    txn_commit_free(c); /* frees t */
    return rc;
}

/* ---- recovery ---- */

int txn_recover(cs_db *db)
{
    unsigned n = db->nshards;
    struct waiter *ws = calloc(n, sizeof(*ws));
    unsigned *shards = calloc(n, sizeof(*shards));
    if (!ws || !shards) {
        free(ws);
        free(shards);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < n; i++) {
        shards[i] = i;
        waiter_init(&ws[i], SHARD_TXN_INDOUBT);
    }
    call_all(db, ws, shards, n);
    struct txn_resolver res;
    txn_resolver_init(&res, n);
    int rc = 0;
    for (unsigned s = 0; s < n && !rc; s++) {
        rc = ws[s].req.rc;
        const uint8_t *p = ws[s].req.out;
        size_t off = 0;
        for (uint32_t k = 0; k < ws[s].req.out_count && !rc; k++) {
            uint16_t np = cs_get_le16(p + off + 9), parts[WAL_TXN_PARTS_MAX];
            cs_assert(np <= WAL_TXN_PARTS_MAX);
            for (uint16_t j = 0; j < np; j++)
                parts[j] = cs_get_le16(p + off + 11 + 2u * j);
            rc = txn_resolver_add(&res, s, cs_get_le64(p + off), p[off + 8], np, parts);
            off += 11u + 2u * np;
        }
    }
    for (unsigned s = 0; s < n; s++)
        cs_free(ws[s].req.out);
    /* decide and install every transaction some shard holds in doubt; outcomes durable */
    for (size_t i = 0; i < res.n && !rc; i++) {
        bool commit = txn_resolver_commits(&res, i);
        unsigned m = 0;
        for (unsigned s = 0; s < n; s++)
            if (txn_resolver_holds(&res, i, s)) {
                waiter_init(&ws[m], SHARD_TXN_DECIDE);
                ws[m].req.txn_id = res.e[i].id;
                ws[m].req.commit = commit;
                ws[m].req.txn_sync = true;
                shards[m++] = s;
            }
        call_all(db, ws, shards, m);
        for (unsigned j = 0; j < m && !rc; j++)
            rc = ws[j].req.rc;
    }
    txn_resolver_free(&res);
    for (unsigned i = 0; i < n; i++) {
        shards[i] = i;
        waiter_init(&ws[i], SHARD_TXN_FORGET);
    }
    call_all(db, ws, shards, n);
    free(ws);
    free(shards);
    return rc;
}
