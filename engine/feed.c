/* The change feed: committed writes, read back from the shards' WALs (shards/wal_reader.c), as
 * events in commit order per key, a transaction's events together.
 *
 * EACH SHARD'S LOG is read in LSN order up to its durable LSN (so an event is never something a
 * crash could still take back). Puts and deletes are events at once (txn id 0; a batch's are
 * delivered together). A PREPARE's writes are kept; a transaction is delivered, all its
 * participants' writes together, at the first COMMIT record the feed meets for it on any shard,
 * and ignored at the others; an ABORT drops what its shard prepared. Per key the order holds: a
 * key lives on one shard, and on that shard a transaction's COMMIT record lies between its
 * PREPARE and any later write of the key. Every participant's PREPARE is durable before any COMMIT
 * is written, so the feed finds them all (reading the other shards further when it must).
 *
 * POSITIONS. A token names, per shard, the last LSN processed (pos) and the LSN from which that
 * shard must be read again to rebuild what the feed still keeps (floor: the oldest PREPARE of a
 * transaction that is not finished on every shard). Resuming re-reads each shard from its floor,
 * recording (not delivering) what lies at or before its pos, then goes on. Every event carries
 * the token that resumes after its transaction or batch. A token survives reopen while the logs
 * still hold every floor; when a checkpoint has removed one, cs_feed_open says CS_ENOTFOUND.
 *   token = "cs1." shards "." pos "-" floor ["." pos "-" floor]...   (hexadecimal numbers)
 *
 * Collections are named through the shards' catalogs (SHARD_COLL_IDS, asked again when a record
 * names an id the feed does not know) and the COLL_CREATE records the feed reads. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "endian.h"
#include "engine/db.h"

#define FEED_POLL_US 1000u          /* how often a waiting cs_feed_next looks again */
#define FEED_PREPARE_WAIT_MS 10000u /* longest wait for a participant's PREPARE to be durable */

struct feed_name {
    uint32_t id;
    char name[CS_NAME_MAX + 1];
};

struct feed_write { /* a write kept from a PREPARE */
    uint8_t type;
    uint32_t coll;
    uint8_t *key;
    uint32_t klen;
    uint8_t *val;
    uint32_t vlen;
};

struct feed_txn { /* a transaction whose PREPAREs the feed met */
    uint64_t id;
    uint16_t nparts;
    uint16_t parts[WAL_TXN_PARTS_MAX];
    bool delivered;
    struct {
        bool prepared, finished;
        uint64_t prepare_lsn;
        struct feed_write *w;
        uint32_t nw;
    } p[WAL_TXN_PARTS_MAX];
};

struct feed_event {
    char coll[CS_NAME_MAX + 1];
    uint8_t *key;
    uint32_t klen;
    uint8_t *val;
    uint32_t vlen;
    bool deleted;
    uint64_t txn;
    char *token; /* shared by the events of one group; owned by the group's last event */
};

struct feed_shard {
    struct wal_reader rd;
    bool open;
    uint64_t pos;    /* last LSN processed */
    uint64_t resume; /* records at or before this are only recorded (resuming) */
    struct feed_name *names;
    size_t nnames, cap_names;
};

struct cs_feed {
    cs_db *db;
    char coll[CS_NAME_MAX + 1]; /* "" = all */
    unsigned n;
    struct feed_shard *s;
    struct feed_txn **txns;
    size_t ntxns, cap_txns;
    struct feed_event *q; /* events ready */
    size_t qhead, qlen, qcap;
    struct feed_event cur; /* the event handed out last (its memory) */
    bool cur_owns_token;
    unsigned rr; /* shard to read first next time */
};

/* ---- names ---- */

static const char *name_of(struct feed_shard *fs, uint32_t id)
{
    for (size_t i = 0; i < fs->nnames; i++)
        if (fs->names[i].id == id)
            return fs->names[i].name;
    return NULL;
}

static int name_add(struct feed_shard *fs, uint32_t id, const void *name, size_t len)
{
    if (len > CS_NAME_MAX || name_of(fs, id))
        return 0;
    if (fs->nnames == fs->cap_names) {
        size_t cap = fs->cap_names ? fs->cap_names * 2 : 16;
        struct feed_name *n = realloc(fs->names, cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        fs->names = n;
        fs->cap_names = cap;
    }
    fs->names[fs->nnames].id = id;
    memcpy(fs->names[fs->nnames].name, name, len);
    fs->names[fs->nnames++].name[len] = '\0';
    return 0;
}

static int names_load(cs_feed *f, unsigned s)
{
    struct waiter w;
    waiter_init(&w, SHARD_COLL_IDS);
    int rc = db_call(f->db, s, &w);
    const uint8_t *p = w.req.out;
    size_t off = 0;
    for (uint32_t i = 0; !rc && i < w.req.out_count; i++) {
        rc = name_add(&f->s[s], cs_get_le32(p + off), p + off + 5, p[off + 4]);
        off += 5u + p[off + 4];
    }
    cs_free(w.req.out);
    return rc;
}

/* ---- the event queue ---- */

static void event_free(struct feed_event *e, bool token)
{
    free(e->key);
    free(e->val);
    if (token)
        free(e->token);
}

static int push(cs_feed *f, const char *coll, const void *key, size_t klen, const void *val,
                size_t vlen, bool deleted, uint64_t txn)
{
    if (f->coll[0] && strcmp(f->coll, coll) != 0)
        return 0;
    if (f->qhead + f->qlen == f->qcap) {
        if (f->qhead) {
            memmove(f->q, f->q + f->qhead, f->qlen * sizeof(*f->q));
            f->qhead = 0;
        } else {
            size_t cap = f->qcap ? f->qcap * 2 : 64;
            struct feed_event *n = realloc(f->q, cap * sizeof(*n));
            if (!n)
                return -ENOMEM;
            f->q = n;
            f->qcap = cap;
        }
    }
    struct feed_event *e = &f->q[f->qhead + f->qlen];
    memset(e, 0, sizeof(*e));
    snprintf(e->coll, sizeof(e->coll), "%s", coll);
    e->key = malloc(klen ? klen : 1);
    e->val = vlen ? malloc(vlen) : NULL;
    if (!e->key || (vlen && !e->val)) {
        event_free(e, false);
        return -ENOMEM;
    }
    memcpy(e->key, key, klen);
    if (vlen)
        memcpy(e->val, val, vlen);
    e->klen = (uint32_t)klen;
    e->vlen = (uint32_t)vlen;
    e->deleted = deleted;
    e->txn = txn;
    f->qlen++;
    return 0;
}

/* The token after everything processed so far, given to the events pushed since mark that have
 * none yet (events pushed by nested reads have theirs). */
static int seal_group(cs_feed *f, size_t mark)
{
    bool any = false;
    for (size_t i = mark; i < f->qlen; i++)
        any |= !f->q[f->qhead + i].token;
    if (!any)
        return 0;
    size_t cap = 16 + (size_t)f->n * 34;
    char *t = malloc(cap);
    if (!t)
        return -ENOMEM;
    int len = snprintf(t, cap, "cs1.%x", f->n);
    for (unsigned s = 0; s < f->n; s++) {
        uint64_t floor = 0;
        for (size_t i = 0; i < f->ntxns; i++)
            for (uint16_t j = 0; j < f->txns[i]->nparts; j++)
                if (f->txns[i]->parts[j] == s && f->txns[i]->p[j].prepared &&
                    (!floor || f->txns[i]->p[j].prepare_lsn < floor))
                    floor = f->txns[i]->p[j].prepare_lsn;
        len += snprintf(t + len, cap - (size_t)len, ".%" PRIx64 "-%" PRIx64, f->s[s].pos, floor);
    }
    for (size_t i = mark; i < f->qlen; i++)
        if (!f->q[f->qhead + i].token)
            f->q[f->qhead + i].token = t; /* the group's last event owns it */
    return 0;
}

/* ---- transactions ---- */

static struct feed_txn *txn_find(cs_feed *f, uint64_t id, size_t *at)
{
    for (size_t i = 0; i < f->ntxns; i++)
        if (f->txns[i]->id == id) {
            if (at)
                *at = i;
            return f->txns[i];
        }
    return NULL;
}

static void txn_drop(cs_feed *f, size_t i)
{
    struct feed_txn *t = f->txns[i];
    for (uint16_t j = 0; j < t->nparts; j++) {
        for (uint32_t k = 0; k < t->p[j].nw; k++) {
            free(t->p[j].w[k].key);
            free(t->p[j].w[k].val);
        }
        free(t->p[j].w);
    }
    free(t);
    f->txns[i] = f->txns[--f->ntxns];
}

static int part_index(const struct feed_txn *t, unsigned shard)
{
    for (uint16_t j = 0; j < t->nparts; j++)
        if (t->parts[j] == shard)
            return j;
    return -1;
}

static int on_prepare(cs_feed *f, unsigned s, uint64_t lsn, const struct wal_rec *rec)
{
    uint64_t id;
    uint16_t n, parts[WAL_TXN_PARTS_MAX];
    if (wal_txn_key_decode(rec->key, rec->klen, &id, &n, parts))
        return CS_ECORRUPT;
    struct feed_txn *t = txn_find(f, id, NULL);
    if (!t) {
        if (f->ntxns == f->cap_txns) {
            size_t cap = f->cap_txns ? f->cap_txns * 2 : 16;
            struct feed_txn **nt = realloc(f->txns, cap * sizeof(*nt));
            if (!nt)
                return -ENOMEM;
            f->txns = nt;
            f->cap_txns = cap;
        }
        t = calloc(1, sizeof(*t));
        if (!t)
            return -ENOMEM;
        t->id = id;
        t->nparts = n;
        memcpy(t->parts, parts, n * sizeof(*parts));
        f->txns[f->ntxns++] = t;
    }
    int j = part_index(t, s);
    if (j < 0 || t->p[j].prepared)
        return CS_ECORRUPT;
    size_t off = 0, nw = 0;
    struct wal_rec sub;
    while (off < rec->vlen)
        if (wal_rec_decode(rec->val, rec->vlen, &off, &sub) || ++nw > CS_BATCH_OPS_MAX)
            return CS_ECORRUPT;
    t->p[j].w = calloc(nw ? nw : 1, sizeof(*t->p[j].w));
    if (!t->p[j].w)
        return -ENOMEM;
    off = 0;
    for (size_t k = 0; k < nw; k++) {
        if (wal_rec_decode(rec->val, rec->vlen, &off, &sub))
            return CS_ECORRUPT;
        struct feed_write *w = &t->p[j].w[t->p[j].nw++];
        w->type = sub.type;
        w->coll = sub.coll;
        w->klen = (uint32_t)sub.klen;
        w->vlen = (uint32_t)sub.vlen;
        w->key = malloc(sub.klen ? sub.klen : 1);
        w->val = sub.vlen ? malloc(sub.vlen) : NULL;
        if (!w->key || (sub.vlen && !w->val))
            return -ENOMEM;
        memcpy(w->key, sub.key, sub.klen);
        if (sub.vlen)
            memcpy(w->val, sub.val, sub.vlen);
    }
    t->p[j].prepared = true;
    t->p[j].prepare_lsn = lsn;
    return 0;
}

static int read_shard(cs_feed *f, unsigned s, uint64_t limit, const bool *stop);

/* Deliver t at its COMMIT at lsn on shard s: every participant's writes, reading a participant
 * further for a PREPARE not met yet (events of that shard before it come first, with their own
 * tokens, which still count s's COMMIT as not processed). */
static int deliver(cs_feed *f, struct feed_txn *t, bool quiet, unsigned s, uint64_t lsn)
{
    if (!quiet) /* catching up keeps the token's positions */
        f->s[s].pos = lsn - 1;
    for (uint16_t j = 0; j < t->nparts; j++) {
        unsigned ps = t->parts[j];
        if (ps >= f->n || (ps == s && !t->p[j].prepared))
            return CS_ECORRUPT;
        /* In sync mode the PREPARE is durable already (a COMMIT follows only durable PREPAREs);
         * in async mode it becomes durable within sync_interval_ms: look again until then. */
        unsigned max_tries =
            f->db->opt.durability == SHARD_ASYNC ? FEED_PREPARE_WAIT_MS * 1000u / FEED_POLL_US : 1u;
        for (unsigned tries = 0; !t->p[j].prepared; tries++) {
            if (tries > max_tries)
                return CS_ECORRUPT;
            if (tries)
                usleep(FEED_POLL_US);
            struct cs_shard_stats st;
            int rc = cs_stats(f->db, ps, &st);
            if (!rc)
                rc = read_shard(f, ps, st.wal_durable_lsn, &t->p[j].prepared);
            if (rc)
                return rc;
        }
    }
    if (!quiet)
        f->s[s].pos = lsn;
    t->delivered = true;
    size_t mark = f->qlen;
    for (uint16_t j = 0; j < t->nparts && !quiet; j++) {
        struct feed_shard *fs = &f->s[t->parts[j]];
        for (uint32_t k = 0; k < t->p[j].nw; k++) {
            const struct feed_write *w = &t->p[j].w[k];
            const char *name = name_of(fs, w->coll);
            if (!name && names_load(f, t->parts[j]) == 0)
                name = name_of(fs, w->coll);
            int rc = push(f, name ? name : "", w->key, w->klen, w->val, w->vlen, w->type == WAL_DEL,
                          t->id);
            if (rc)
                return rc;
        }
    }
    return seal_group(f, mark);
}

/* An outcome record on shard s. */
static int on_outcome(cs_feed *f, unsigned s, uint64_t lsn, const struct wal_rec *rec, bool quiet)
{
    uint64_t id = cs_get_le64(rec->key);
    size_t at;
    struct feed_txn *t = txn_find(f, id, &at);
    if (!t)
        return 0; /* an abort of a transaction this shard voted no on, or one before our start */
    int j = part_index(t, s);
    if (j < 0)
        return CS_ECORRUPT;
    if (rec->type == WAL_TXN_COMMIT && !t->delivered) {
        int rc = deliver(f, t, quiet, s, lsn);
        if (rc)
            return rc;
    }
    t->p[j].finished = true;
    if (rec->type == WAL_TXN_ABORT) { /* nothing of it will be delivered: forget this part */
        t->p[j].prepared = false;
        bool any = false;
        for (uint16_t k = 0; k < t->nparts; k++)
            any |= t->p[k].prepared && !t->p[k].finished;
        if (!any && !t->delivered)
            txn_drop(f, at);
        return 0;
    }
    bool all = true;
    for (uint16_t k = 0; k < t->nparts; k++)
        all &= t->p[k].finished;
    if (all)
        txn_drop(f, at);
    return 0;
}

static int on_record(cs_feed *f, unsigned s, uint64_t lsn, const struct wal_rec *rec)
{
    struct feed_shard *fs = &f->s[s];
    bool quiet = lsn <= fs->resume;
    switch (rec->type) {
    case WAL_COLL_CREATE:
        return name_add(fs, rec->coll, rec->key, rec->klen);
    case WAL_COLL_DROP:
        return 0;
    case WAL_TXN_PREPARE:
        return on_prepare(f, s, lsn, rec);
    case WAL_TXN_COMMIT:
    case WAL_TXN_ABORT:
        return on_outcome(f, s, lsn, rec, quiet);
    }
    if (quiet)
        return 0;
    const char *name = name_of(fs, rec->coll);
    if (!name && names_load(f, s) == 0)
        name = name_of(fs, rec->coll);
    if (rec->type != WAL_BATCH)
        return push(f, name ? name : "", rec->key, rec->klen, rec->val, rec->vlen,
                    rec->type == WAL_DEL, 0);
    size_t off = 0;
    struct wal_rec sub;
    while (off < rec->vlen) {
        if (wal_rec_decode(rec->val, rec->vlen, &off, &sub))
            return CS_ECORRUPT;
        const char *sn = name_of(fs, sub.coll);
        int rc =
            push(f, sn ? sn : "", sub.key, sub.klen, sub.val, sub.vlen, sub.type == WAL_DEL, 0);
        if (rc)
            return rc;
    }
    return 0;
}

/* Process shard s's records up to limit: until *stop turns true, or (stop NULL) until a record
 * made events. */
static int read_shard(cs_feed *f, unsigned s, uint64_t limit, const bool *stop)
{
    struct feed_shard *fs = &f->s[s];
    for (;;) {
        if (stop ? *stop : f->qlen > 0)
            return 0;
        uint64_t lsn;
        struct wal_rec rec;
        int rc = wal_reader_next(&fs->rd, limit, &lsn, &rec);
        if (rc == 1)
            return 0;
        if (rc)
            return rc;
        size_t mark = f->qlen;
        rc = on_record(f, s, lsn, &rec);
        if (lsn > fs->pos)
            fs->pos = lsn;
        if (!rc)
            rc = seal_group(f, mark);
        if (rc)
            return rc;
    }
}

/* ---- the API ---- */

static int token_parse(const char *tok, unsigned n, uint64_t *pos, uint64_t *floor)
{
    unsigned shards;
    int used;
    if (sscanf(tok, "cs1.%x%n", &shards, &used) != 1 || shards != n)
        return CS_EINVAL;
    const char *p = tok + used;
    for (unsigned s = 0; s < n; s++) {
        if (sscanf(p, ".%" SCNx64 "-%" SCNx64 "%n", &pos[s], &floor[s], &used) != 2)
            return CS_EINVAL;
        p += used;
    }
    return *p ? CS_EINVAL : 0;
}

void cs_feed_close(cs_feed *f)
{
    if (!f)
        return;
    for (unsigned s = 0; f->s && s < f->n; s++) {
        if (f->s[s].open)
            wal_reader_close(&f->s[s].rd);
        free(f->s[s].names);
    }
    while (f->ntxns)
        txn_drop(f, f->ntxns - 1);
    for (size_t i = 0; i < f->qlen; i++) {
        struct feed_event *e = &f->q[f->qhead + i];
        event_free(e, i + 1 == f->qlen || f->q[f->qhead + i + 1].token != e->token);
    }
    event_free(&f->cur, f->cur_owns_token);
    free(f->q);
    free(f->txns);
    free(f->s);
    free(f);
}

int cs_feed_open(cs_db *db, const char *coll, const char *from, cs_feed **out)
{
    if (!db || !out)
        return CS_EINVAL;
    *out = NULL;
    if (db->opt.durability == SHARD_NONE)
        return CS_ENOTSUP; /* no log to follow */
    uint16_t nlen = 0;
    if (coll && db_check_name(coll, &nlen))
        return CS_ENAME;
    cs_feed *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->db = db;
    f->n = db->nshards;
    if (coll)
        memcpy(f->coll, coll, nlen);
    f->s = calloc(f->n, sizeof(*f->s));
    uint64_t *pos = calloc(f->n, sizeof(uint64_t)), *floor = calloc(f->n, sizeof(uint64_t));
    uint64_t *durable = calloc(f->n, sizeof(uint64_t));
    int rc = f->s && pos && floor && durable ? 0 : -ENOMEM;
    if (!rc && from)
        rc = token_parse(from, f->n, pos, floor);
    for (unsigned s = 0; s < f->n && !rc; s++) {
        struct cs_shard_stats st;
        rc = cs_stats(db, s, &st);
        if (rc)
            break;
        durable[s] = st.wal_durable_lsn;
        if (!from)
            pos[s] = st.wal_durable_lsn; /* now */
        if (pos[s] > st.wal_durable_lsn) {
            rc = CS_EINVAL; /* a position this log never reached */
            break;
        }
        uint64_t start = floor[s] && floor[s] <= pos[s] ? floor[s] : pos[s] + 1;
        char dir[PATH_MAX + 16];
        if (snprintf(dir, sizeof(dir), "%s/shard-%03u", db->dir, s) >= (int)sizeof(dir)) {
            rc = -ENAMETOOLONG;
            break;
        }
        rc = wal_reader_open(&f->s[s].rd, dir, s, start);
        f->s[s].open = rc == 0;
        f->s[s].pos = pos[s];
        f->s[s].resume = pos[s];
        if (!rc)
            rc = names_load(f, s);
    }
    /* resuming: read every shard up to its position first (recording, not delivering) */
    for (unsigned s = 0; s < f->n && !rc && from; s++)
        while (!rc && f->s[s].rd.next <= pos[s]) {
            uint64_t lsn;
            struct wal_rec rec;
            rc = wal_reader_next(&f->s[s].rd, durable[s], &lsn, &rec);
            if (rc == 1) {
                rc = CS_ECORRUPT; /* the log ends before the position */
                break;
            }
            if (!rc && lsn > pos[s]) { /* a frame goes on past the position: leave the rest */
                wal_reader_unread(&f->s[s].rd);
                break;
            }
            if (!rc)
                rc = on_record(f, s, lsn, &rec);
            if (!rc && f->qlen)
                rc = CS_ECORRUPT; /* catching up delivers nothing */
        }
    free(durable);
    free(pos);
    free(floor);
    if (rc) {
        cs_feed_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int cs_feed_next(cs_feed *f, struct cs_feed_event *ev, int timeout_ms)
{
    if (!f || !ev)
        return CS_EINVAL;
    event_free(&f->cur, f->cur_owns_token);
    memset(&f->cur, 0, sizeof(f->cur));
    uint64_t deadline = now_us() + (timeout_ms > 0 ? (uint64_t)timeout_ms * 1000u : 0);
    for (;;) {
        for (unsigned i = 0; i < f->n && !f->qlen; i++) {
            unsigned s = (f->rr + i) % f->n;
            struct cs_shard_stats st;
            int rc = cs_stats(f->db, s, &st);
            if (!rc)
                rc = read_shard(f, s, st.wal_durable_lsn, NULL);
            if (rc)
                return rc;
        }
        f->rr = (f->rr + 1) % f->n;
        if (f->qlen)
            break;
        if (timeout_ms >= 0 && now_us() >= deadline)
            return CS_ENOTFOUND;
        usleep(FEED_POLL_US);
    }
    f->cur = f->q[f->qhead++];
    f->qlen--;
    f->cur_owns_token = !f->qlen || f->q[f->qhead].token != f->cur.token;
    ev->coll = f->cur.coll;
    ev->key = f->cur.key;
    ev->klen = f->cur.klen;
    ev->val = f->cur.deleted ? NULL : f->cur.val;
    ev->vlen = f->cur.deleted ? 0 : f->cur.vlen;
    ev->deleted = f->cur.deleted;
    ev->txn_id = f->cur.txn;
    ev->position = f->cur.token;
    return 0;
}
