/* Executing requests on the shard thread, and replaying the WAL at recovery.
 *
 * Every write follows the same order, so that a failure leaves nothing half done: check what can
 * be checked (read-only shard, memory limit, CS_COLLECTIONS_MAX), reserve room (the frame undo's
 * arrays and the WAL frame's bytes: -ENOMEM leaves everything as it was), change the tree (which
 * hands what the key held to the undo log, undo.c, in the same descent, before it changes
 * anything), then append the WAL record, which cannot fail. Atomic batches apply every operation
 * or none (a snapshot of each tree they touch is the rollback). Replay applies each WAL record
 * after the checkpoint's LSN through the same tree operations; a record that contradicts the
 * state before it is CS_ECORRUPT.
 *
 * EXPIRY. A put carries the record's expiry (0: none) into the tree and its WAL record; a put
 * without one clears it. Reads hide a record whose expiry has passed (cs_expired: the clock is
 * read only for records that have one), as if it were absent: a get answers CS_ENOTFOUND, an
 * update sees no record, a delete of it answers CS_ENOTFOUND (and still removes it). Replay
 * applies records as they were logged, expired or not: hiding is the readers' part, removing is
 * the background reclaim's (shards/expire.c), which logs ordinary deletes. */
#include "shards/shard_int.h"

/* A batch operation's type is its WAL record type (the record is logged as it is). */
_Static_assert((int)SHARD_BATCH_PUT == (int)WAL_PUT, "batch puts log as WAL_PUT");
_Static_assert((int)SHARD_BATCH_DEL == (int)WAL_DEL, "batch deletes log as WAL_DEL");

/* Apply rec (a put or a delete of one key of c) to c's tree. In sync mode the tree hands what
 * the key held to the open frame's undo log in the same descent (undo_log_old). Returns 0,
 * CS_ENOTFOUND (a delete of a missing key), or -ENOMEM; on error the tree and the undo log are
 * as they were. */
int exec_tree_write(struct shard *sh, struct shard_coll *c, const struct wal_rec *rec)
{
    struct undo_write w = {.sh = sh, .coll = c, .key = rec->key, .klen = rec->klen};
    btree_old_fn log = sh->undo_on ? undo_log_old : NULL;
    uint64_t before = tree_bytes_before(c), count = c->tree.count;
    int rc;
    if (rec->type == WAL_PUT) {
        rc = btree_put_old(&c->tree, rec->key, rec->klen, rec->val, rec->vlen, rec->expire_ms, log,
                           &w);
        if (rec->expire_ms && !rc)
            sh->expire_hint = true; /* the reclaim has something to look for */
    } else {
        rc = btree_del_old(&c->tree, rec->key, rec->klen, undo_del_old, &w);
    }
    tree_bytes_after(sh, c, before, count);
    sh->last_old_expire_ms = w.old_expire_ms;
    return rc;
}

/* ---- recovery ---- */

int exec_replay_op(struct shard *sh, const struct wal_rec *rec)
{
    cs_assert(!sh->undo_on); /* recovery: nothing to take back */
    struct shard_coll *c = coll_find_id(sh, rec->coll);
    if (!c)
        return CS_ECORRUPT;
    int rc = exec_tree_write(sh, c, rec);
    coll_dirty(sh, c);
    if (rc == CS_ENOTFOUND && rec->had_expiry)
        return 0; /* the checkpoint left the expired record out */
    return rc == CS_ENOTFOUND ? CS_ECORRUPT : rc;
}

/* A batch is applied whole or not at all: its nested records are all checked first. */
static int replay_batch(struct shard *sh, const struct wal_rec *rec)
{
    size_t off = 0;
    uint32_t n = 0;
    for (; off < rec->vlen && n < CS_BATCH_OPS_MAX; n++) {
        struct wal_rec sub;
        if (wal_rec_decode(rec->val, rec->vlen, &off, &sub) != 0)
            return CS_ECORRUPT;
        if (sub.type != WAL_PUT && sub.type != WAL_DEL)
            return CS_ECORRUPT;
    }
    if (off != rec->vlen)
        return CS_ECORRUPT;
    off = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct wal_rec sub;
        int rc = wal_rec_decode(rec->val, rec->vlen, &off, &sub);
        if (!rc)
            rc = exec_replay_op(sh, &sub);
        if (rc)
            return rc;
    }
    return 0;
}

int shard_replay_apply(void *arg, uint64_t lsn, const struct wal_rec *rec)
{
    struct shard *sh = arg;
    sh->applied_lsn = lsn;
    switch (rec->type) {
    case WAL_PUT:
    case WAL_DEL:
        return exec_replay_op(sh, rec);
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
    case WAL_TXN_PREPARE:
    case WAL_TXN_COMMIT:
    case WAL_TXN_ABORT:
        return txn_replay(sh, lsn, rec);
    }
    return CS_ECORRUPT;
}

/* ---- executing requests ---- */

int exec_write_allowed(struct shard *sh)
{
    if (sh->io_error)
        return CS_EIO;
    if (sh->cfg.memory_bytes_max && sh->tree_bytes >= sh->cfg.memory_bytes_max)
        return CS_EFULL;
    return 0;
}

/* Find the collection for a write, creating it (and logging its creation) when missing. The
 * caller reserved WAL room for a create record. */
int exec_coll_for_write(struct shard *sh, const char *name, size_t len, struct shard_coll **out)
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
            sh->data_lsn = sh->applied_lsn = wal_append(&sh->wal, &rec);
        }
    }
    *out = c;
    return 0;
}

static size_t create_rec_bytes(size_t name_len)
{
    return WAL_RECORD_HEADER_BYTES + name_len;
}

/* Reserve room for everything a request may change: trees and catalog entries in the open
 * frame's undo, wal_bytes in its WAL frame. -ENOMEM leaves everything as it was. */
static int write_reserve(struct shard *sh, size_t trees, size_t cats, size_t wal_bytes)
{
    int rc = undo_reserve(sh, trees, cats);
    if (!rc && sh->wal_on)
        rc = wal_reserve(&sh->wal, wal_bytes);
    return rc;
}

/* A put or delete of one key of c (room reserved): change the tree, then log rec. Returns 0,
 * CS_ENOTFOUND (a delete of a missing key) or -ENOMEM, with nothing changed on error. */
static int write_key(struct shard *sh, struct shard_coll *c, struct wal_rec *rec)
{
    int rc = exec_tree_write(sh, c, rec);
    if (rc)
        return rc;
    coll_dirty(sh, c);
    if (sh->wal_on) {
        rec->coll = c->id;
        rec->had_expiry = rec->type == WAL_DEL && sh->last_old_expire_ms != 0;
        sh->data_lsn = sh->applied_lsn = wal_append(&sh->wal, rec);
    }
    return 0;
}

/* The put record of r's key with value val and expiry expire_ms. */
static struct wal_rec put_rec(const struct shard_req *r, const void *val, size_t vlen,
                              uint64_t expire_ms)
{
    return (struct wal_rec){.type = WAL_PUT,
                            .key = r->key,
                            .klen = r->klen,
                            .val = val,
                            .vlen = vlen,
                            .expire_ms = expire_ms};
}

static int exec_put(struct shard *sh, struct shard_req *r)
{
    int rc = exec_write_allowed(sh);
    if (rc)
        return rc;
    struct wal_rec rec = put_rec(r, r->val, r->vlen, r->expire_ms);
    rc = write_reserve(sh, 1, 1, wal_rec_bytes(&rec) + create_rec_bytes(r->coll_len));
    struct shard_coll *c;
    if (!rc)
        rc = exec_coll_for_write(sh, r->coll, r->coll_len, &c);
    if (!rc)
        rc = write_key(sh, c, &rec);
    if (!rc)
        sh->stats.puts++;
    return rc;
}

static int exec_del(struct shard *sh, struct shard_req *r)
{
    if (sh->io_error)
        return CS_EIO;
    struct shard_coll *c = coll_find(sh, r->coll, r->coll_len);
    if (!c)
        return CS_ENOTFOUND;
    struct wal_rec rec = {.type = WAL_DEL, .key = r->key, .klen = r->klen};
    int rc = write_reserve(sh, 1, 0, wal_rec_bytes(&rec));
    if (!rc)
        rc = write_key(sh, c, &rec);
    if (!rc)
        sh->stats.dels++;
    if (!rc && cs_expired(sh->last_old_expire_ms))
        rc = CS_ENOTFOUND; /* it was gone already to every reader: removed all the same */
    return rc;
}

int exec_expire_del(struct shard *sh, struct shard_coll *c, const void *key, size_t klen)
{
    struct wal_rec rec = {.type = WAL_DEL, .key = key, .klen = klen};
    int rc = write_reserve(sh, 1, 0, wal_rec_bytes(&rec));
    if (!rc)
        rc = write_key(sh, c, &rec);
    if (!rc)
        sh->stats.expired++;
    return rc;
}

/* Set the expiry of c's record at r->key, whose value old[0, oldlen) views the tree: a put of
 * the same value with the new expiry (the WAL logs a put: replay, the feed and replicas need
 * nothing new). The tree copies the value before it changes anything; the record is read back
 * for the WAL record, which is appended after the tree changed. */
static int exec_reexpire(struct shard *sh, struct shard_req *r, struct shard_coll *c,
                         const void *old, size_t oldlen, uint64_t expire_ms)
{
    int rc = exec_write_allowed(sh);
    if (rc)
        return rc;
    struct wal_rec rec = put_rec(r, old, oldlen, expire_ms);
    rc = write_reserve(sh, 1, 0, wal_rec_bytes(&rec));
    if (!rc)
        rc = exec_tree_write(sh, c, &rec);
    if (rc)
        return rc;
    rc = btree_get(&c->tree, r->key, r->klen, &rec.val, &rec.vlen);
    cs_assert(rc == 0 && rec.vlen == oldlen);
    coll_dirty(sh, c);
    if (sh->wal_on) {
        rec.coll = c->id;
        sh->data_lsn = sh->applied_lsn = wal_append(&sh->wal, &rec);
    }
    sh->stats.puts++;
    return 0;
}

/* A read-modify-write of one key (SHARD_UPDATE): read, let the caller's function decide, then
 * write through the put or delete path, all in one step of the loop. */
static int exec_update(struct shard *sh, struct shard_req *r)
{
    if (sh->fenced)
        return CS_EIO;
    struct shard_coll *c = coll_find(sh, r->coll, r->coll_len);
    const void *old = NULL;
    size_t oldlen = 0;
    uint64_t old_exp = 0;
    bool found = false;
    if (c) {
        int rc = btree_get_exp(&c->tree, r->key, r->klen, &old, &oldlen, &old_exp);
        if (rc && rc != CS_ENOTFOUND)
            return rc;
        found = rc == 0 && !cs_expired(old_exp);
    }
    if (!found)
        old_exp = 0;
    struct shard_update_out out = {.write = SHARD_UPDATE_NONE, .expire_ms = old_exp};
    int rc = r->update->fn(r->update->arg, found ? old : NULL, found ? oldlen : 0, found, &out);
    if (rc)
        return rc;
    switch (out.write) {
    case SHARD_UPDATE_PUT:
        if (out.vlen > CS_VALUE_MAX)
            return CS_EVALSIZE;
        r->val = out.val;
        r->vlen = out.vlen;
        r->expire_ms = out.expire_ms;
        return exec_put(sh, r);
    case SHARD_UPDATE_EXPIRE:
        if (!found || out.expire_ms == old_exp)
            return 0; /* nothing to change */
        return exec_reexpire(sh, r, c, old, oldlen, out.expire_ms);
    case SHARD_UPDATE_DEL:
        rc = found ? exec_del(sh, r) : 0;
        return rc == CS_ENOTFOUND ? 0 : rc;
    default:
        return 0;
    }
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
    uint64_t exp;
    int rc = btree_get_exp(&c->tree, r->key, r->klen, &v, &vlen, &exp);
    if (rc)
        return rc;
    if (cs_expired(exp))
        return CS_ENOTFOUND;
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

enum { BATCH_DONE = 1, BATCH_HAD_EXPIRY = 2 };

struct batch_state {
    struct shard_coll **coll;    /* per op: its collection (NULL: delete in a missing one) */
    uint8_t *effective;          /* per op: changed the tree (so it is logged): BATCH_DONE, and
                                    BATCH_HAD_EXPIRY for a delete of a record with an expiry */
    struct shard_coll **touched; /* distinct collections snapshotted for rollback */
    struct btree_snap *snaps;    /* their snapshots */
    size_t ntouched;             /* entries used */
};

static int batch_alloc(struct shard *sh, struct batch_state *b, size_t n)
{
    memset(b, 0, sizeof(*b));
    size_t bytes = n * (2 * sizeof(void *) + sizeof(uint8_t) + sizeof(struct btree_snap));
    uint8_t *p = cs_mem_alloc(sh->arena, bytes);
    if (!p)
        return -ENOMEM;
    b->coll = (struct shard_coll **)p;
    b->touched = (struct shard_coll **)(p + n * sizeof(void *));
    b->snaps = (struct btree_snap *)(p + 2 * n * sizeof(void *));
    b->effective = p + 2 * n * sizeof(void *) + n * sizeof(struct btree_snap);
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
        bytes += WAL_RECORD_HEADER_BYTES + op->klen + op->vlen + create_rec_bytes(op->coll_len) +
                 (op->expire_ms ? WAL_EXPIRY_BYTES : 0);
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
            rc = exec_coll_for_write(sh, op->coll, op->coll_len, &c);
        if (rc)
            return rc;
        b->coll[i] = c;
        b->effective[i] = 0;
        if (!c)
            continue;      /* a delete in a collection this shard does not hold: nothing to log */
        undo_touch(sh, c); /* the frame's undo: a snapshot, so tree_write logs nothing */
        batch_snapshot(b, c);
        struct wal_rec rec = {.type = op->type,
                              .key = op->key,
                              .klen = op->klen,
                              .val = op->val,
                              .vlen = op->vlen,
                              .expire_ms = op->expire_ms};
        rc = exec_tree_write(sh, c, &rec);
        coll_dirty(sh, c); /* also when the batch is then rolled back: harmless */
        if (rc && rc != CS_ENOTFOUND)
            return rc;
        b->effective[i] = rc ? 0 : BATCH_DONE | (sh->last_old_expire_ms ? BATCH_HAD_EXPIRY : 0);
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
                              .vlen = op->vlen,
                              .expire_ms = op->expire_ms,
                              .had_expiry =
                                  op->type == WAL_DEL && (b->effective[i] & BATCH_HAD_EXPIRY)};
        wal_batch_add(&sh->wal, &rec);
    }
    sh->data_lsn = sh->applied_lsn = wal_batch_end(&sh->wal);
}

int exec_batch(struct shard *sh, struct shard_req *r)
{
    int rc = exec_write_allowed(sh);
    if (rc)
        return rc;
    rc = write_reserve(sh, r->nops, r->nops, batch_wal_bytes(r));
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
    int rc = write_reserve(sh, 0, 1, create_rec_bytes(r->coll_len));
    if (rc)
        return rc;
    struct shard_coll *c;
    return exec_coll_for_write(sh, r->coll, r->coll_len, &c);
}

static int exec_coll_drop(struct shard *sh, struct shard_req *r)
{
    struct shard_coll *c = coll_find(sh, r->coll, r->coll_len);
    if (!c)
        return CS_ENOTFOUND;
    if (sh->io_error)
        return CS_EIO;
    if (txn_coll_busy(c))
        return CS_ECONFLICT; /* a prepared transaction writes into it: drop again later */
    struct wal_rec rec = {.type = WAL_COLL_DROP, .coll = c->id};
    int rc = write_reserve(sh, 0, 1, wal_rec_bytes(&rec));
    if (rc)
        return rc;
    if (sh->wal_on)
        sh->data_lsn = sh->applied_lsn = wal_append(&sh->wal, &rec);
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

/* The collections with their shard-local ids (the change feed names WAL records by them). */
static int exec_coll_ids(struct shard *sh, struct shard_req *r)
{
    size_t bytes = 1;
    uint32_t n = 0;
    for (unsigned b = 0; b < COLL_BUCKETS; b++)
        for (struct shard_coll *c = sh->by_name[b]; c; c = c->next_name, n++)
            bytes += 5u + c->name_len;
    uint8_t *out = cs_mem_alloc(sh->arena, bytes);
    if (!out)
        return -ENOMEM;
    size_t off = 0;
    for (unsigned b = 0; b < COLL_BUCKETS; b++)
        for (struct shard_coll *c = sh->by_name[b]; c; c = c->next_name) {
            cs_put_le32(out + off, c->id);
            out[off + 4] = c->name_len;
            memcpy(out + off + 5, c->name, c->name_len);
            off += 5u + c->name_len;
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
    sh->stats.requests_pending = sh->pending_count;
    uint64_t queued = 0;
    for (const struct shard_req *q = sh->queue; q; q = q->next) /* at most what is in flight */
        queued++;
    sh->stats.requests_queued = queued;
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
void shard_exec(struct shard *sh, struct shard_req *r)
{
    SHARD_OWNED(sh);
    int rc = 0;
    r->out = NULL;
    switch (r->op) {
    case SHARD_PUT:
        if (txn_park(sh, r))
            return;
        rc = exec_put(sh, r);
        break;
    case SHARD_GET:
        if (!txn_get(sh, r, &rc))
            rc = exec_get(sh, r);
        req_finish_read(sh, r, rc);
        return;
    case SHARD_DEL:
        if (txn_park(sh, r))
            return;
        rc = exec_del(sh, r);
        break;
    case SHARD_UPDATE:
        if (txn_park(sh, r))
            return;
        rc = exec_update(sh, r);
        break;
    case SHARD_BATCH:
        if (txn_park(sh, r))
            return;
        rc = exec_batch(sh, r);
        break;
    case SHARD_TXN_COMMIT1:
        exec_txn_commit1(sh, r);
        return;
    case SHARD_TXN_PREPARE:
        exec_txn_prepare(sh, r);
        return;
    case SHARD_TXN_DECIDE:
        exec_txn_decide(sh, r);
        return;
    case SHARD_TXN_INDOUBT:
        req_complete(r, exec_txn_indoubt(sh, r));
        return;
    case SHARD_TXN_FORGET:
        exec_txn_forget(sh);
        req_complete(r, 0);
        return;
    case SHARD_COLL_CREATE:
        rc = exec_coll_create(sh, r);
        break;
    case SHARD_COLL_DROP:
        rc = exec_coll_drop(sh, r);
        break;
    case SHARD_COLL_LIST:
        rc = exec_coll_list(sh, r);
        break;
    case SHARD_COLL_IDS:
        rc = exec_coll_ids(sh, r);
        break;
    case SHARD_VIEW_PIN:
        req_finish_read(sh, r, exec_view_pin(sh, r));
        return;
    case SHARD_VIEW_PIN_ALL:
        req_finish_read(sh, r, exec_view_pin_all(sh, r));
        return;
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
    case SHARD_GUEST:
        sh->guest = r->guest;
        rc = 0;
        break;
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
