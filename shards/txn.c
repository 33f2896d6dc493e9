/* Transactions on the shard: validation, the lock table, PREPARE and its outcome, and the
 * transactions recovery finds in doubt. The coordinator is engine/txn.c; DESIGN.md §5 is the
 * protocol.
 *
 * ONE SHARD (SHARD_TXN_COMMIT1). Every read the transaction made is checked against the tree
 * (the key must hold the same value, by XXH3-128, or still be absent), no key it reads or writes
 * may be locked by a prepared transaction (else it waits: WHO WAITS), and its writes are then
 * applied as one atomic batch (one WAL record), all in one step of the shard thread: nothing can
 * come between validation and apply, and nothing is locked across loop iterations.
 *
 * SEVERAL SHARDS (SHARD_TXN_PREPARE, then SHARD_TXN_DECIDE). Each participant validates the same
 * way and, in the same step, locks: a write lock on every key it writes (the lock holds the new
 * value: the write intent) and a read mark on every key it read; then it appends a PREPARE record
 * (the transaction id, every participant, and its own writes) to the open frame. The vote yes is
 * the PREPARE being durable (the request completes then); a conflict is a no vote, with nothing
 * logged and nothing locked (presumed abort); a lock held by another prepared transaction makes
 * it wait first (WHO WAITS). The transaction is committed when every PREPARE is durable: the
 * coordinator then installs the writes (SHARD_TXN_DECIDE): each participant applies its intents to
 * the trees, appends a COMMIT record that nobody waits for, and releases its locks. An abort
 * releases the locks and appends an ABORT record.
 *
 * WHO WAITS. A prepared transaction's locks never wait for anything but the fsync of the other
 * participants' PREPAREs (and its coordinator's decision). A transaction's request (a one-shard
 * commit or a PREPARE) that meets a lock it cannot take (its write meets a write lock, a read
 * mark or a range mark; its read meets a write lock, or a read-marked key others wait on; its
 * walked range holds a prepared write) holds nothing on this shard: it is parked on that lock and
 * validated again from the start when the lock goes, so its reads are checked against what the
 * holder's outcome left. A read that can hold under no outcome (it matches neither the tree nor
 * the holder's intent) is refused at once. Whether it may wait is engine/txn_core.c's
 * txn_may_wait: a PREPARE waits only for transactions older than itself (smaller ids), so the
 * waits-for graph has no cycle across shards (an older one is refused: CS_ECONFLICT); a one-shard
 * commit holds no lock anywhere and may wait for any; and TXN_WAIT_PARKS_MAX and
 * TXN_WAIT_QUEUE_MAX bound the parks of a request and the queue of a lock. A one-shard commit
 * that reads nothing waits without those limits, as a plain batch does. An ordered write's
 * PREPARE (a blind write run again after a conflict: engine/txn_core.h, ORDERED WRITES) waits
 * for anyone without limit; no transaction waits for one that may still wait (it is refused),
 * and on each shard only one waits at a time (sh->ordered_head: it reserves the keys it writes,
 * struct txn_lock.reserved, so that nothing new takes them before it; the ordered PREPAREs
 * behind it queue in sh->ordered_queue, FIFO). A read mark is not
 * taken on a lock that transaction requests wait on (it queues behind them): a parked request
 * thus only ever waits for holders it was checked against. A plain put, delete or batch that
 * meets a lock is parked on it the same way and runs again when it goes (it holds nothing
 * either). A plain get of a key whose intent belongs to a transaction already committed returns
 * the intent (the install is on its way): once any shard shows a transaction's writes, every
 * shard does. A lock-free get does not read the view for a key whose intent slot
 * (shard.intent_keys, by the lock hash) counts intents, and a cursor does not pin the view of a
 * collection that holds any (the reader takes the queue), so a lock-free reader never sees a tree
 * the install has not reached yet. Cursors over several shards pin their views under the gate
 * (engine/txn.c).
 *
 * A WRITE THAT MEETS ONLY READ MARKS waits like any other. It could be ordered after the readers
 * only if its commit came after theirs: applied at once (a one-shard commit), or committed as
 * soon as its PREPAREs are durable, it could be installed while a reader R is still undecided,
 * and a snapshot taken then would see the write without R's writes although R read the value the
 * write replaced (R before the write before the snapshot before R: not serializable). Letting it
 * pass safely needs its vote held back until every reader's outcome is decided here, and a proof
 * in txn-sim whose checker orders transactions by their dependencies rather than by their last
 * durable PREPARE; neither is done.
 *
 * SETTLING. After its outcome record is durable, a participant keeps the transaction until every
 * participant's outcome record is durable (shard_txn.unsettled): until then a crash could leave
 * another participant with a PREPARE and no outcome, and recovery then asks this one. Decided
 * transactions move from sh->txn_parts (prepared: what validation and decisions search) to
 * sh->txn_settling (what txn_poll walks on every loop iteration), so neither walk pays for the
 * other's: with 256 commits in flight the one list had cost a tenth of the CPU.
 *
 * CHECKPOINTS drop the log before them, so they carry what the log would have told recovery:
 * each transaction prepared here (id, participants, writes) and each one settling (id and
 * outcome), as checkpoint entries (txn_ckpt_encode; format in checkpoint.c). Loading one brings
 * back a prepared transaction (its COMMIT or ABORT may follow in the log) or a known outcome.
 *
 * RECOVERY. Replay keeps every PREPARE until its COMMIT (apply the writes) or ABORT (forget
 * them); the rest are in doubt. engine/db.c asks every shard (SHARD_TXN_INDOUBT): a transaction is
 * committed when some participant logged its COMMIT, or when every participant it names holds its
 * PREPARE; otherwise it is aborted. The outcomes are made durable (SHARD_TXN_DECIDE with
 * txn_sync) before the database serves. */
#include "shards/shard_int.h"

#include "engine/txn_core.h" /* txn_may_wait: pure, shared with tests/sim/txn_sim.c */

/* ---- shared transaction state ---- */

void shard_txn_unref(struct shard_txn *x)
{
    if (x && __atomic_sub_fetch(&x->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(x);
}

static int txn_state(const struct txn_part *p)
{
    return p->x ? __atomic_load_n(&p->x->state, __ATOMIC_ACQUIRE) : SHARD_TXN_PENDING;
}

/* ---- the lock table ---- */

static struct txn_lock *lock_find(struct shard *sh, const char *name, size_t nlen, const void *key,
                                  size_t klen, uint64_t h)
{
    if (!sh->nlocks)
        return NULL;
    for (struct txn_lock *l = sh->locks[h & (TXN_LOCK_BUCKETS - 1)]; l; l = l->next)
        if (l->hash == h && l->name_len == nlen && l->klen == klen &&
            memcmp(l->bytes, name, nlen) == 0 && memcmp(l->bytes + nlen, key, klen) == 0)
            return l;
    return NULL;
}

static struct txn_lock *lock_get(struct shard *sh, const char *name, size_t nlen, const void *key,
                                 size_t klen)
{
    uint64_t h = txn_key_hash(name, nlen, key, klen);
    struct txn_lock *l = lock_find(sh, name, nlen, key, klen, h);
    if (l)
        return l;
    if (!sh->locks && !(sh->locks = calloc(TXN_LOCK_BUCKETS, sizeof(*sh->locks))))
        return NULL;
    l = cs_mem_alloc(sh->arena, sizeof(*l) + nlen + klen);
    if (!l)
        return NULL;
    memset(l, 0, sizeof(*l));
    l->hash = h;
    l->name_len = (uint8_t)nlen;
    l->klen = (uint16_t)klen;
    memcpy(l->bytes, name, nlen);
    memcpy(l->bytes + nlen, key, klen);
    struct txn_lock **b = &sh->locks[h & (TXN_LOCK_BUCKETS - 1)];
    l->next = *b;
    *b = l;
    sh->nlocks++;
    return l;
}

/* Once nothing holds l, its waiters go to the front of the queue (in their order), and l is
 * freed unless the waiting ordered write reserved it (it stays, so that others keep meeting the
 * reservation). */
static void lock_release_if_idle(struct shard *sh, struct txn_lock *l)
{
    if (l->writer || l->readers)
        return;
    if (l->waiters) {
        l->waiters_tail->next = sh->queue;
        sh->queue = l->waiters;
        l->waiters = l->waiters_tail = NULL;
        l->txn_waiters = 0;
    }
    if (l->reserved)
        return;
    struct txn_lock **p = &sh->locks[l->hash & (TXN_LOCK_BUCKETS - 1)];
    while (*p != l)
        p = &(*p)->next;
    *p = l->next;
    sh->nlocks--;
    cs_mem_free(l);
}

static struct txn_lock *lock_of(struct shard *sh, const char *name, size_t nlen, const void *key,
                                size_t klen)
{
    return sh->nlocks ? lock_find(sh, name, nlen, key, klen, txn_key_hash(name, nlen, key, klen))
                      : NULL;
}

/* Append r to the FIFO queue (*head, *tail). */
static void fifo_append(struct shard_req **head, struct shard_req **tail, struct shard_req *r)
{
    r->next = NULL;
    if (*tail)
        (*tail)->next = r;
    else
        *head = r;
    *tail = r;
}

static void park(struct txn_lock *l, struct shard_req *r)
{
    fifo_append(&l->waiters, &l->waiters_tail, r);
}

/* The prepared transaction (other than self) whose range mark holds key of coll, or NULL. */
static struct txn_part *range_holder(struct shard *sh, const char *coll, size_t nlen,
                                     const void *key, size_t klen, const struct txn_part *self)
{
    if (!sh->txn_range_marks)
        return NULL;
    for (struct txn_part *p = sh->txn_parts; p; p = p->next) {
        if (p == self || p->phase != TXN_PREPARED)
            continue;
        for (uint32_t i = 0; i < p->nrg; i++)
            if (p->rg[i].coll_len == nlen && memcmp(p->rg[i].coll, coll, nlen) == 0 &&
                shard_txn_range_has(&p->rg[i], key, klen))
                return p;
    }
    return NULL;
}

static void park_range(struct shard *sh, struct shard_req *r)
{
    fifo_append(&sh->range_waiters, &sh->range_waiters_tail, r);
}

bool txn_park(struct shard *sh, struct shard_req *r)
{
    SHARD_OWNED(sh);
    if (sh->txn_range_marks) {
        if (r->op == SHARD_BATCH) {
            for (size_t i = 0; i < r->nops; i++)
                if (range_holder(sh, r->ops[i].coll, r->ops[i].coll_len, r->ops[i].key,
                                 r->ops[i].klen, NULL)) {
                    park_range(sh, r);
                    return true;
                }
        } else if (range_holder(sh, r->coll, r->coll_len, r->key, r->klen, NULL)) {
            park_range(sh, r);
            return true;
        }
    }
    if (!sh->nlocks)
        return false;
    if (r->op == SHARD_BATCH) {
        for (size_t i = 0; i < r->nops; i++) {
            const struct shard_batch_op *op = &r->ops[i];
            struct txn_lock *l = lock_of(sh, op->coll, op->coll_len, op->key, op->klen);
            if (l) {
                park(l, r);
                return true;
            }
        }
        return false;
    }
    struct txn_lock *l = lock_of(sh, r->coll, r->coll_len, r->key, r->klen);
    if (!l)
        return false;
    park(l, r);
    return true;
}

bool txn_get(struct shard *sh, struct shard_req *r, int *rc)
{
    SHARD_OWNED(sh);
    struct txn_lock *l = lock_of(sh, r->coll, r->coll_len, r->key, r->klen);
    if (!l || !l->writer || txn_state(l->writer) != SHARD_TXN_COMMITTED)
        return false;
    sh->stats.gets++;
    const struct txn_write *w = &l->writer->w[l->wi];
    r->out = NULL;
    r->out_len = 0;
    *rc = 0;
    if (w->type == SHARD_BATCH_DEL) {
        *rc = CS_ENOTFOUND;
        return true;
    }
    r->out_len = w->vlen;
    if (w->vlen) {
        if (!(r->out = cs_mem_alloc(sh->arena, w->vlen)))
            *rc = -ENOMEM;
        else
            memcpy(r->out, w->bytes + w->klen, w->vlen);
    }
    return true;
}

bool txn_coll_busy(const struct shard_coll *c)
{
    return __atomic_load_n(&c->intents, __ATOMIC_RELAXED) != 0;
}

/* ---- validation ---- */

#define TXN_PARKED 1 /* internal: the request was parked on a lock (it runs again later) */

/* The prepared transactions a transaction's request met while it validated: it waits for them
 * (or is refused, txn_may_wait). */
struct txn_block {
    bool any;              /* something was met */
    struct txn_lock *lock; /* the first lock met: the request parks on it (NULL: a range mark) */
    uint64_t holder_max;   /* the largest id among the undecided holders met (0: none) */
    bool ordered;          /* an undecided ordered write, or a reservation, was met */
};

/* The id that waiting for p's lock counts against the age rule: 0 when p's outcome is decided
 * already (its SHARD_TXN_DECIDE is on its way and waits for nothing, so a wait for it closes no
 * cycle, whatever the ages). */
static uint64_t holder_id(const struct txn_part *p)
{
    return txn_state(p) == SHARD_TXN_PENDING ? p->id : 0;
}

/* Whether p is an ordered write that may still wait elsewhere: not decided, and not locked on
 * its last participant yet (from then on it waits for nothing but fsyncs, as any holder). */
static bool holder_ordered(const struct txn_part *p)
{
    return p->x && p->x->ordered && txn_state(p) == SHARD_TXN_PENDING &&
           !__atomic_load_n(&p->x->ordered_locked, __ATOMIC_ACQUIRE);
}

static void block_add(struct txn_block *b, struct txn_lock *l, uint64_t holder_id, bool ordered)
{
    if (!b->any) {
        b->any = true;
        b->lock = l;
        b->holder_max = holder_id;
    } else if (holder_id > b->holder_max) {
        b->holder_max = holder_id;
    }
    b->ordered |= ordered;
}

static void block_add_part(struct txn_block *b, struct txn_lock *l, const struct txn_part *p)
{
    block_add(b, l, holder_id(p), holder_ordered(p));
}

static bool read_matches(const struct shard_txn_read *x, bool present, const void *v, size_t vlen)
{
    if (present != x->present)
        return false;
    if (!present)
        return true;
    XXH128_hash_t hh = XXH3_128bits(v, vlen);
    return hh.low64 == x->hash[0] && hh.high64 == x->hash[1];
}

/* Every read still holds: the key holds the same value (or still none). A key a prepared
 * transaction writes is met (b): the read is checked again once that transaction's outcome is
 * installed; it is refused at once only when it matches neither the tree nor the intent (it
 * cannot hold then, whatever the outcome: a get shows a committed transaction's intent before
 * its install). So is a key whose lock has transaction requests parked on it. */
static int check_reads(struct shard *sh, const struct shard_txn_read *rd, size_t n,
                       struct txn_block *b)
{
    for (size_t i = 0; i < n; i++) {
        const struct shard_txn_read *x = &rd[i];
        struct txn_lock *l = lock_of(sh, x->coll, x->coll_len, x->key, x->klen);
        struct txn_part *writer = l ? l->writer : NULL;
        struct shard_coll *c = coll_find(sh, x->coll, x->coll_len);
        const void *v = NULL;
        size_t vlen = 0;
        uint64_t exp = 0;
        bool present = c && btree_get_exp(&c->tree, x->key, x->klen, &v, &vlen, &exp) == 0 &&
                       !cs_expired(exp); /* an expired record reads as absent */
        if (!read_matches(x, present, v, vlen)) {
            if (!writer)
                return CS_ECONFLICT;
            const struct txn_write *w = &writer->w[l->wi];
            if (!read_matches(x, w->type == SHARD_BATCH_PUT, w->bytes + w->klen, w->vlen))
                return CS_ECONFLICT;
        }
        if (writer)
            block_add_part(b, l, writer);
        else if (l && l->txn_waiters)
            /* a read mark would join the holders that those waiters wait for, younger or not:
             * it queues behind them instead, so a parked request only ever waits for the
             * holders it was checked against */
            block_add(b, l, l->reader_id_max, false);
        if (l && l->reserved)
            block_add(b, l, 0, true); /* the waiting ordered write will write it */
    }
    return 0;
}

/* No key written is locked by another prepared transaction: its write lock, or a read mark (the
 * reader validated against the value a write would change), or a range mark, nor reserved by
 * the waiting ordered write unless head (the request is that write). What is met goes to b. */
static void check_writes(struct shard *sh, const struct shard_batch_op *ops, size_t n, bool head,
                         struct txn_block *b)
{
    for (size_t i = 0; i < n; i++) {
        struct txn_lock *l = lock_of(sh, ops[i].coll, ops[i].coll_len, ops[i].key, ops[i].klen);
        if (l && l->writer)
            block_add_part(b, l, l->writer);
        else if (l && l->readers)
            block_add(b, l, l->reader_id_max, false); /* readers are never ordered writes */
        if (l && l->reserved && !head)
            block_add(b, l, 0, true);
        struct txn_part *p =
            range_holder(sh, ops[i].coll, ops[i].coll_len, ops[i].key, ops[i].klen, NULL);
        if (p)
            block_add(b, NULL, holder_id(p), false);
    }
}

/* Every range a cursor read still holds the same records (else CS_ECONFLICT); a prepared
 * transaction that writes into one (its install would change it) is met (b). */
static int check_ranges(struct shard *sh, const struct shard_txn_range *rg, size_t n,
                        struct txn_block *b)
{
    for (size_t i = 0; i < n; i++) {
        const struct shard_txn_range *r = &rg[i];
        for (const struct txn_part *p = sh->txn_parts; p; p = p->next) /* prepared writes */
            for (uint32_t k = 0; p->phase == TXN_PREPARED && k < p->nw; k++) {
                const struct txn_write *w = &p->w[k];
                if (w->lock && w->lock->name_len == r->coll_len &&
                    memcmp(w->lock->bytes, r->coll, r->coll_len) == 0 &&
                    shard_txn_range_has(r, w->bytes, w->klen))
                    block_add_part(b, w->lock, p);
            }
        const struct shard_req *h = sh->ordered_head; /* the keys it reserved */
        for (size_t k = 0; h && k < h->nops; k++)
            if (h->ops[k].coll_len == r->coll_len &&
                memcmp(h->ops[k].coll, r->coll, r->coll_len) == 0 &&
                shard_txn_range_has(r, h->ops[k].key, h->ops[k].klen)) {
                struct txn_lock *l =
                    lock_of(sh, r->coll, r->coll_len, h->ops[k].key, h->ops[k].klen);
                cs_assert(l && l->reserved); /* the head reserved each key it writes */
                block_add(b, l, 0, true);
            }
        uint64_t count = 0, sum[2] = {0, 0};
        struct shard_coll *c = coll_find(sh, r->coll, r->coll_len);
        if (c) {
            struct btree_snap snap;
            uint64_t before = tree_bytes_before(c), tcount = c->tree.count;
            btree_snap_take(&c->tree, &snap);
            struct btree_cursor cur;
            btree_cursor_init(&cur, &snap);
            bool on = r->lo_flags & SHARD_RANGE_UNBOUND ? btree_cursor_first(&cur)
                                                        : btree_cursor_seek(&cur, r->lo, r->lo_len);
            uint64_t now_ms = cs_clock_ms();
            for (; on; on = btree_cursor_next(&cur)) {
                const void *k, *v;
                size_t kl, vl;
                btree_cursor_get(&cur, &k, &kl, &v, &vl);
                if (cs_expired_at(btree_cursor_expiry(&cur), now_ms))
                    continue; /* absent to readers: cursors skip it too */
                if (!shard_txn_range_has(r, k, kl)) {
                    if (!(r->hi_flags & SHARD_RANGE_UNBOUND) &&
                        shard_key_cmp(k, kl, r->hi, r->hi_len) > 0)
                        break;
                    continue; /* the excluded low bound itself */
                }
                count++;
                shard_txn_range_mix(k, kl, v, vl, sum);
            }
            btree_snap_release(&c->tree, &snap);
            tree_bytes_after(sh, c, before, tcount);
        }
        if (count != r->count || sum[0] != r->sum[0] || sum[1] != r->sum[1])
            return CS_ECONFLICT;
    }
    return 0;
}

/* Validate r's reads, ranges and writes: 0 (valid; b->any: but it met prepared transactions),
 * or CS_ECONFLICT (it cannot hold, whatever they decide). */
static int validate(struct shard *sh, const struct shard_req *r, struct txn_block *b)
{
    int rc = check_reads(sh, r->reads, r->nreads, b);
    if (!rc)
        rc = check_ranges(sh, r->ranges, r->nranges, b);
    if (!rc)
        check_writes(sh, r->ops, r->nops, sh->ordered_head == r, b);
    return rc;
}

/* r (of transaction id; 0: a one-shard commit) met prepared transactions (b): park it on the
 * first lock it met, to be validated again from the start once that lock goes (TXN_PARKED), or
 * refuse it (CS_ECONFLICT) as txn_may_wait rules. */
static int wait_or_refuse(struct shard *sh, struct shard_req *r, uint64_t id, bool ordered,
                          const struct txn_block *b)
{
    cs_assert(b->any);
    unsigned queued = b->lock ? b->lock->txn_waiters : sh->range_txn_waiters;
    if (!txn_may_wait(id, ordered, b->holder_max, b->ordered, r->parks, queued))
        return CS_ECONFLICT;
    if (r->parks < UINT8_MAX) /* an ordered write parks without limit */
        r->parks++;
    if (b->lock) {
        b->lock->txn_waiters++;
        park(b->lock, r);
    } else {
        sh->range_txn_waiters++;
        park_range(sh, r);
    }
    return TXN_PARKED;
}

void exec_txn_commit1(struct shard *sh, struct shard_req *r)
{
    SHARD_OWNED(sh);
    r->out = NULL;
    struct txn_block b = {0};
    int rc = sh->fenced ? CS_EIO : validate(sh, r, &b);
    /* with nothing read, it waits without limit, as a plain batch does: it holds nothing */
    bool blind = !r->nreads && !r->nranges;
    if (!rc && b.any && (rc = wait_or_refuse(sh, r, 0, blind, &b)) == TXN_PARKED)
        return;
    if (!rc && r->nops)
        rc = exec_batch(sh, r);
    if (rc == CS_ECONFLICT)
        sh->stats.txn_conflicts++;
    else if (!rc)
        sh->stats.txn_commits++;
    if (sh->cfg.durability != SHARD_SYNC && sh->wseq != sh->ack_seq)
        __atomic_store_n(&sh->ack_seq, sh->wseq, __ATOMIC_RELEASE);
    req_finish(sh, r, rc);
}

/* ---- prepared transactions ---- */

static struct txn_part *part_find(struct shard *sh, uint64_t id)
{
    for (struct txn_part *p = sh->txn_parts; p; p = p->next)
        if (p->id == id)
            return p;
    return NULL;
}

static void part_unlink(struct shard *sh, struct txn_part *p)
{
    struct txn_part **pp = &sh->txn_parts;
    while (*pp != p)
        pp = &(*pp)->next;
    *pp = p->next;
}

/* Release p's locks (its intents leave the collections' counts). */
static void part_unlock(struct shard *sh, struct txn_part *p)
{
    for (uint32_t i = 0; i < p->nw; i++) {
        struct txn_write *w = &p->w[i];
        if (!w->lock)
            continue;
        w->lock->writer = NULL;
        if (w->coll) {
            __atomic_sub_fetch(&sh->intent_keys[intent_slot(w->lock->hash)], 1, __ATOMIC_RELEASE);
            __atomic_sub_fetch(&w->coll->intents, 1, __ATOMIC_RELEASE);
        }
        lock_release_if_idle(sh, w->lock);
        w->lock = NULL;
    }
    for (uint32_t i = 0; i < p->nr; i++) {
        p->rd[i]->readers--;
        lock_release_if_idle(sh, p->rd[i]);
    }
    p->nr = 0;
    if (p->nrg) { /* the range marks go: the writes parked on them run again */
        p->nrg = 0;
        sh->txn_range_marks--;
        if (sh->range_waiters) {
            sh->range_waiters_tail->next = sh->queue;
            sh->queue = sh->range_waiters;
            sh->range_waiters = sh->range_waiters_tail = NULL;
            sh->range_txn_waiters = 0;
        }
    }
}

/* Keep copies of the ranges as p's range marks. */
static int part_add_ranges(struct shard *sh, struct txn_part *p, const struct shard_txn_range *rg,
                           size_t n)
{
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += rg[i].coll_len + rg[i].lo_len + rg[i].hi_len;
    p->rg = cs_mem_alloc(sh->arena, n * sizeof(*p->rg));
    p->rg_bytes = cs_mem_alloc(sh->arena, bytes ? bytes : 1);
    if (!p->rg || !p->rg_bytes)
        return -ENOMEM;
    uint8_t *b = p->rg_bytes;
    for (size_t i = 0; i < n; i++) {
        p->rg[i] = rg[i];
        memcpy(b, rg[i].coll, rg[i].coll_len);
        p->rg[i].coll = (const char *)b;
        b += rg[i].coll_len;
        memcpy(b, rg[i].lo, rg[i].lo_len);
        p->rg[i].lo = b;
        b += rg[i].lo_len;
        memcpy(b, rg[i].hi, rg[i].hi_len);
        p->rg[i].hi = b;
        b += rg[i].hi_len;
    }
    p->nrg = (uint32_t)n;
    sh->txn_range_marks++;
    return 0;
}

static void part_free(struct shard *sh, struct txn_part *p)
{
    part_unlock(sh, p);
    for (uint32_t i = 0; i < p->nw; i++) {
        cs_mem_free(p->w[i].bytes);
        if (p->w[i].coll)
            coll_unref(sh, p->w[i].coll);
    }
    cs_mem_free(p->w);
    cs_mem_free(p->rd);
    cs_mem_free(p->rg);
    cs_mem_free(p->rg_bytes);
    cs_mem_free(p->parts);
    shard_txn_unref(p->x);
    cs_mem_free(p);
}

static struct txn_part *part_new(struct shard *sh, uint64_t id, uint16_t nparts,
                                 const uint16_t *parts, size_t nw, size_t nr)
{
    struct txn_part *p = cs_mem_alloc(sh->arena, sizeof(*p));
    if (!p)
        return NULL;
    memset(p, 0, sizeof(*p));
    p->id = id;
    p->nparts = nparts;
    p->parts = cs_mem_alloc(sh->arena, sizeof(uint16_t) * nparts);
    p->w = cs_mem_alloc(sh->arena, sizeof(*p->w) * (nw ? nw : 1));
    p->rd = cs_mem_alloc(sh->arena, sizeof(*p->rd) * (nr ? nr : 1));
    if (!p->parts || !p->w || !p->rd) {
        part_free(sh, p);
        return NULL;
    }
    memcpy(p->parts, parts, sizeof(uint16_t) * nparts);
    return p;
}

/* Add a write to p (copying key and value); c is referenced. */
static int part_add_write(struct shard *sh, struct txn_part *p, struct shard_coll *c, uint8_t type,
                          const void *key, size_t klen, const void *val, size_t vlen,
                          uint64_t expire_ms)
{
    struct txn_write *w = &p->w[p->nw];
    memset(w, 0, sizeof(*w));
    w->bytes = cs_mem_alloc(sh->arena, klen + vlen);
    if (!w->bytes)
        return -ENOMEM;
    memcpy(w->bytes, key, klen);
    if (vlen)
        memcpy(w->bytes + klen, val, vlen);
    w->type = type;
    w->klen = (uint32_t)klen;
    w->vlen = (uint32_t)vlen;
    w->expire_ms = expire_ms;
    w->coll = c;
    c->refs++;
    p->nw++;
    return 0;
}

static size_t prepare_key(const struct shard_txn *x, uint8_t *key)
{
    cs_put_le64(key, x->id);
    cs_put_le16(key + WAL_TXN_ID_BYTES, x->nparts);
    for (uint16_t i = 0; i < x->nparts; i++)
        cs_put_le16(key + WAL_TXN_ID_BYTES + 2 + 2 * i, x->parts[i]);
    return WAL_TXN_ID_BYTES + 2u + 2u * x->nparts;
}

static size_t prepare_bytes(const struct shard_req *r)
{
    size_t bytes = WAL_RECORD_HEADER_BYTES + WAL_TXN_ID_BYTES + 2u + 2u * r->txn->nparts;
    for (size_t i = 0; i < r->nops; i++)
        bytes += 2u * WAL_RECORD_HEADER_BYTES + r->ops[i].klen + r->ops[i].vlen +
                 r->ops[i].coll_len + /* the record, and a collection it may create */
                 (r->ops[i].expire_ms ? WAL_EXPIRY_BYTES : 0);
    return bytes;
}

/* Take r's locks and log its PREPARE (rc: what validation answered; nonzero is returned as it
 * is). */
static int prepare_locked(struct shard *sh, struct shard_req *r, int rc, struct txn_part **out)
{
    struct shard_txn *x = r->txn;
    if (!rc)
        rc = undo_reserve(sh, 0, r->nops);
    if (!rc && sh->wal_on)
        rc = wal_reserve(&sh->wal, prepare_bytes(r));
    if (rc)
        return rc;
    struct txn_part *p = part_new(sh, x->id, x->nparts, x->parts, r->nops, r->nreads);
    if (!p)
        return -ENOMEM;
    /* writes: their collections (created when missing, as a put would), copies, write locks */
    for (size_t i = 0; i < r->nops && !rc; i++) {
        const struct shard_batch_op *op = &r->ops[i];
        struct shard_coll *c = coll_find(sh, op->coll, op->coll_len);
        if (!c)
            rc = exec_coll_for_write(sh, op->coll, op->coll_len, &c);
        if (!rc)
            rc = part_add_write(sh, p, c, op->type, op->key, op->klen, op->val, op->vlen,
                                op->expire_ms);
        struct txn_lock *l = rc ? NULL : lock_get(sh, op->coll, op->coll_len, op->key, op->klen);
        if (!rc && !l)
            rc = -ENOMEM;
        if (!rc) {
            l->writer = p;
            l->wi = p->nw - 1;
            p->w[p->nw - 1].lock = l;
            __atomic_add_fetch(&sh->intent_keys[intent_slot(l->hash)], 1, __ATOMIC_RELEASE);
            __atomic_add_fetch(&c->intents, 1, __ATOMIC_RELEASE);
        }
    }
    /* reads: a mark on each key not written here too */
    for (size_t i = 0; i < r->nreads && !rc; i++) {
        const struct shard_txn_read *rd = &r->reads[i];
        struct txn_lock *l = lock_get(sh, rd->coll, rd->coll_len, rd->key, rd->klen);
        if (!l) {
            rc = -ENOMEM;
            break;
        }
        if (l->writer == p)
            continue;
        if (!l->readers || x->id > l->reader_id_max)
            l->reader_id_max = x->id;
        l->readers++;
        p->rd[p->nr++] = l;
    }
    if (!rc && r->nranges)
        rc = part_add_ranges(sh, p, r->ranges, r->nranges);
    if (rc) {
        part_free(sh, p);
        return rc;
    }
    if (sh->wal_on) {
        uint8_t key[WAL_TXN_ID_BYTES + 2 + 2 * WAL_TXN_PARTS_MAX];
        wal_group_begin(&sh->wal, key, prepare_key(x, key));
        for (uint32_t i = 0; i < p->nw; i++) {
            const struct txn_write *w = &p->w[i];
            struct wal_rec rec = {.type = w->type,
                                  .coll = w->coll->id,
                                  .key = w->bytes,
                                  .klen = w->klen,
                                  .val = w->bytes + w->klen,
                                  .vlen = w->vlen,
                                  .expire_ms = w->expire_ms};
            wal_batch_add(&sh->wal, &rec);
        }
        sh->applied_lsn = wal_group_end(&sh->wal, WAL_TXN_PREPARE);
    }
    if (x->ordered && x->parts[x->nparts - 1] == sh->cfg.index)
        __atomic_store_n(&x->ordered_locked, true, __ATOMIC_RELEASE);
    __atomic_add_fetch(&x->refs, 1, __ATOMIC_ACQ_REL);
    p->x = x;
    p->next = sh->txn_parts;
    sh->txn_parts = p;
    *out = p;
    return 0;
}

/* ---- ordered writes (engine/txn_core.h, ORDERED WRITES) ---- */

/* r becomes the shard's waiting ordered write: it reserves every key it writes here. */
static int ordered_reserve(struct shard *sh, struct shard_req *r)
{
    cs_assert(!sh->ordered_head);
    cs_assert(r->txn && r->txn->ordered);
    sh->ordered_head = r;
    for (size_t i = 0; i < r->nops; i++) {
        const struct shard_batch_op *op = &r->ops[i];
        struct txn_lock *l = lock_get(sh, op->coll, op->coll_len, op->key, op->klen);
        if (!l)
            return -ENOMEM; /* the caller ends the head (ordered_end) */
        l->reserved = true;
    }
    return 0;
}

/* The head r is done waiting (it locked its keys, or failed): its reservations go, and the
 * ordered writes queued behind it run again, in their order, before anything else. */
static void ordered_end(struct shard *sh, struct shard_req *r)
{
    cs_assert(sh->ordered_head == r);
    sh->ordered_head = NULL;
    for (size_t i = 0; i < r->nops; i++) {
        const struct shard_batch_op *op = &r->ops[i];
        struct txn_lock *l = lock_of(sh, op->coll, op->coll_len, op->key, op->klen);
        if (l && l->reserved) { /* (a key written twice is met twice) */
            l->reserved = false;
            lock_release_if_idle(sh, l);
        }
    }
    if (sh->ordered_queue) {
        sh->ordered_queue_tail->next = sh->queue;
        sh->queue = sh->ordered_queue;
        sh->ordered_queue = sh->ordered_queue_tail = NULL;
    }
}

static int prepare(struct shard *sh, struct shard_req *r, struct txn_part **out)
{
    struct shard_txn *x = r->txn;
    if (x->ordered && sh->ordered_head && sh->ordered_head != r) {
        fifo_append(&sh->ordered_queue, &sh->ordered_queue_tail, r); /* behind the head */
        return TXN_PARKED;
    }
    int rc = sh->fenced ? CS_EIO : 0;
    if (!rc && r->nops)
        rc = exec_write_allowed(sh);
    struct txn_block b = {0};
    if (!rc)
        rc = validate(sh, r, &b);
    cs_assert(!(x->ordered && rc == CS_ECONFLICT)); /* no reads: nothing to refuse */
    if (!rc && b.any && x->ordered && sh->ordered_head != r)
        rc = ordered_reserve(sh, r);
    if (!rc && b.any)
        rc = wait_or_refuse(sh, r, x->id, x->ordered, &b);
    if (rc != TXN_PARKED && sh->ordered_head == r) {
        rc = prepare_locked(sh, r, rc, out);
        ordered_end(sh, r); /* after its locks are taken: others meet them, not a gap */
        return rc;
    }
    return prepare_locked(sh, r, rc, out);
}
void exec_txn_prepare(struct shard *sh, struct shard_req *r)
{
    SHARD_OWNED(sh);
    r->out = NULL;
    struct txn_part *p = NULL;
    int rc = prepare(sh, r, &p);
    if (rc == TXN_PARKED)
        return; /* validated again from the start once the lock goes */
    if (rc == CS_ECONFLICT)
        sh->stats.txn_conflicts++;
    req_finish(sh, r, rc); /* the vote: yes once the PREPARE is durable */
}

/* Apply p's writes to the trees (the frame undo can take them back, as any write's). */
static int install(struct shard *sh, struct txn_part *p)
{
    int rc = undo_reserve(sh, p->nw, 0);
    for (uint32_t i = 0; i < p->nw && !rc; i++) {
        struct txn_write *w = &p->w[i];
        struct shard_coll *c = w->coll;
        if (c->dropped)
            return CS_ECORRUPT; /* cannot happen: a collection with intents is not dropped */
        struct wal_rec rec = {.type = w->type == SHARD_BATCH_PUT ? WAL_PUT : WAL_DEL,
                              .key = w->bytes,
                              .klen = w->klen,
                              .val = w->bytes + w->klen,
                              .vlen = w->vlen,
                              .expire_ms = w->expire_ms};
        rc = exec_tree_write(sh, c, &rec);
        if (rc == CS_ENOTFOUND)
            rc = 0; /* deleting an absent key changes nothing */
        if (!rc)
            coll_dirty(sh, c);
    }
    return rc;
}

/* The outcome record (nothing waits for it unless r->txn_sync). It rides in the shard's next
 * frame: a frame that holds only outcome records is not written until another record joins it,
 * someone waits on it, or OUTCOME_HOLD_NS pass (shard.c: frame_held), so a participant's next
 * PREPARE does not wait behind a write of its own. */
static void log_outcome(struct shard *sh, struct txn_part *p)
{
    if (!sh->wal_on || sh->io_error)
        return;
    uint8_t id[WAL_TXN_ID_BYTES];
    cs_put_le64(id, p->id);
    struct wal_rec rec = {
        .type = p->committed ? WAL_TXN_COMMIT : WAL_TXN_ABORT, .key = id, .klen = sizeof(id)};
    if (wal_reserve(&sh->wal, wal_rec_bytes(&rec)) != 0)
        return; /* the outcome stays unlogged: recovery decides it again, the same way */
    bool only = wal_open_bytes(&sh->wal) == sh->outcome_bytes;
    p->outcome_lsn = sh->applied_lsn = wal_append(&sh->wal, &rec);
    if (only) /* the frame may wait for other records (shard.c: frame_held) */
        sh->outcome_bytes = wal_open_bytes(&sh->wal);
}

/* A committed transaction could not be installed: the shard stops serving until reopened, when
 * recovery installs it from its PREPARE. */
static void fence(struct shard *sh, struct txn_part *p, int rc)
{
    fprintf(stderr,
            "cstore: shard %u: transaction %016" PRIx64 " is committed but could not be "
            "installed (%s); the shard is fenced until the database is reopened\n",
            sh->cfg.index, p->id, cs_strerror(rc));
    sh->fenced = true;
    if (!sh->io_error)
        sh->io_error = CS_EIO;
    sh->stats.io_error = sh->io_error;
}

void exec_txn_decide(struct shard *sh, struct shard_req *r)
{
    SHARD_OWNED(sh);
    r->out = NULL;
    uint64_t id = r->txn ? r->txn->id : r->txn_id;
    struct txn_part *p = part_find(sh, id);
    if (!p || p->phase != TXN_PREPARED) {
        /* an abort for a shard that voted no (or never prepared); a commit must find it */
        req_complete(r, r->commit ? CS_ECORRUPT : 0);
        return;
    }
    p->committed = r->commit;
    p->decide_seq = ++sh->txn_decide_seq;
    if (r->commit) {
        sh->stats.txn_commits++;
        sh->stats.txn_cross_commits += p->parts[0] == sh->cfg.index;
        int rc = install(sh, p);
        if (rc)
            fence(sh, p, rc);
    }
    log_outcome(sh, p);
    p->phase = TXN_SETTLING;
    part_unlink(sh, p); /* to the settling list, which txn_poll walks */
    p->next = sh->txn_settling;
    sh->txn_settling = p;
    if (r->commit)
        /* readers must stop trusting views before the intents go (see views.c: view_find) */
        __atomic_store_n(&sh->ack_seq, sh->wseq, __ATOMIC_RELEASE);
    part_unlock(sh, p);
    if (r->txn_sync)
        req_finish(sh, r, 0);
    else
        req_complete(r, 0);
}

void txn_after_rollback(struct shard *sh, bool writable)
{
    SHARD_OWNED(sh);
    for (uint64_t last = 0;;) { /* in the order they were decided: conflicting ones in order */
        struct txn_part *next = NULL;
        for (struct txn_part *p = sh->txn_settling; p; p = p->next)
            if (p->phase == TXN_SETTLING && !p->counted && p->decide_seq > last &&
                (!next || p->decide_seq < next->decide_seq))
                next = p;
        if (!next)
            break;
        last = next->decide_seq;
        if (next->outcome_lsn && next->outcome_lsn <= sh->durable_lsn)
            continue; /* its frame was durable: nothing of it was taken back */
        next->outcome_lsn = 0;
        if (next->committed) {
            int rc = install(sh, next);
            if (rc)
                fence(sh, next, rc);
        }
        if (writable)
            log_outcome(sh, next);
    }
    __atomic_store_n(&sh->ack_seq, sh->wseq, __ATOMIC_RELEASE);
}

/* ---- settling ---- */

/* An outcome that could not be logged (the shard failed) never becomes durable: the other
 * participants then keep the transaction until the database is reopened. */
static bool outcome_durable(const struct shard *sh, const struct txn_part *p)
{
    if (!sh->wal_on)
        return true;
    return p->outcome_lsn && p->outcome_lsn <= sh->durable_lsn;
}

/* Unless durable_lsn moved, txn_poll walks the settling list once in this many calls. */
#define TXN_POLL_SKIPS_MAX 32u

/* Count the outcomes that became durable, and free the transactions every participant settled.
 * A walk costs the length of the list (with 256 commits in flight, hundreds of transactions wait
 * for their own or the other participants' outcome records), so it runs when durable_lsn moved
 * (outcomes here became durable) or once in TXN_POLL_SKIPS_MAX loop iterations (others' outcomes,
 * which no event here announces; as before, an idle loop frees them at its next event). */
void txn_poll(struct shard *sh)
{
    SHARD_OWNED(sh);
    if (sh->durable_lsn == sh->txn_poll_lsn && ++sh->txn_poll_skips < TXN_POLL_SKIPS_MAX)
        return;
    sh->txn_poll_lsn = sh->durable_lsn;
    sh->txn_poll_skips = 0;
    struct txn_part **pp = &sh->txn_settling;
    while (*pp) {
        struct txn_part *p = *pp;
        if (p->phase == TXN_SETTLING && !p->counted && outcome_durable(sh, p)) {
            p->counted = true;
            if (p->x)
                __atomic_sub_fetch(&p->x->unsettled, 1, __ATOMIC_ACQ_REL);
        }
        if (p->counted && (!p->x || __atomic_load_n(&p->x->unsettled, __ATOMIC_ACQUIRE) == 0)) {
            *pp = p->next;
            part_free(sh, p);
            continue;
        }
        pp = &p->next;
    }
}

static int known_add(struct shard *sh, uint64_t id, bool committed)
{
    struct txn_known *k = cs_mem_alloc(sh->arena, sizeof(*k));
    if (!k)
        return -ENOMEM;
    k->id = id;
    k->committed = committed;
    k->next = sh->txn_known;
    sh->txn_known = k;
    return 0;
}

/* ---- checkpoints ----
 * Payloads (little-endian), see checkpoint.c for the entries around them:
 *   transaction (3): u64 id, u8 state (SHARD_TXN_DOUBT_*: prepared here, or settling committed
 *                    or aborted), u16 n, u16 participants[n], u32 writes that follow (0 unless
 *                    prepared)
 *   write (4):       u8 type (SHARD_BATCH_PUT or _DEL), u32 collection id, u16 key bytes,
 *                    u32 value bytes, key, value, then for a put with an expiry u64 expiry (Unix
 *                    ms, not 0): the payload's length says whether it is there (files written
 *                    before expiry existed never have it)
 * A transaction's write of a key keeps the expiry its shard_batch_op gave it (cs_batch_put_ttl);
 * a put without one (cs_txn_put) clears the key's expiry, as Redis SET does. */

static int buf_grow(uint8_t **buf, size_t *len, size_t *cap, size_t more)
{
    if (*len + more <= *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 4096;
    while (c < *len + more)
        c *= 2;
    uint8_t *nb = realloc(*buf, c);
    if (!nb)
        return -ENOMEM;
    *buf = nb;
    *cap = c;
    return 0;
}

int txn_ckpt_encode(struct shard *sh, struct ckpt_job *job)
{
    SHARD_OWNED(sh);
    size_t len = 0, cap = 0;
    uint8_t *b = NULL;
    struct txn_part *lists[2] = {sh->txn_parts, sh->txn_settling};
    for (unsigned l = 0; l < 2; l++)
        for (struct txn_part *p = lists[l]; p; p = p->next) {
            bool prepared = p->phase == TXN_PREPARED;
            size_t pl = 8 + 1 + 2 + 2u * p->nparts + 4;
            if (buf_grow(&b, &len, &cap, 5 + pl)) {
                free(b);
                return -ENOMEM;
            }
            uint8_t *q = b + len;
            q[0] = 3; /* CKPT_ENTRY_TXN */
            cs_put_le32(q + 1, (uint32_t)pl);
            cs_put_le64(q + 5, p->id);
            q[13] = prepared ? SHARD_TXN_DOUBT_PREPARED
                             : (p->committed ? SHARD_TXN_DOUBT_COMMITTED : SHARD_TXN_DOUBT_ABORTED);
            cs_put_le16(q + 14, p->nparts);
            for (uint16_t i = 0; i < p->nparts; i++)
                cs_put_le16(q + 16 + 2 * i, p->parts[i]);
            cs_put_le32(q + 16 + 2u * p->nparts, prepared ? p->nw : 0);
            len += 5 + pl;
            for (uint32_t i = 0; prepared && i < p->nw; i++) {
                const struct txn_write *w = &p->w[i];
                size_t wl = 1 + 4 + 2 + 4 + w->klen + w->vlen + (w->expire_ms ? 8u : 0u);
                if (buf_grow(&b, &len, &cap, 5 + wl)) {
                    free(b);
                    return -ENOMEM;
                }
                q = b + len;
                q[0] = 4; /* CKPT_ENTRY_TXN_WRITE */
                cs_put_le32(q + 1, (uint32_t)wl);
                q[5] = w->type;
                cs_put_le32(q + 6, w->coll->id);
                cs_put_le16(q + 10, (uint16_t)w->klen);
                cs_put_le32(q + 12, w->vlen);
                memcpy(q + 16, w->bytes, w->klen + w->vlen);
                if (w->expire_ms) /* a put's expiry trails the value */
                    cs_put_le64(q + 16 + w->klen + w->vlen, w->expire_ms);
                len += 5 + wl;
            }
        }
    job->txn = b;
    job->txn_len = len;
    return 0;
}

/* The transaction being loaded: its part, and the writes still expected. */
int txn_ckpt_load(void *arg, uint8_t type, const uint8_t *q, size_t len)
{
    struct shard *sh = arg;
    if (type == 3) {
        if (sh->txn_load_left)
            return CS_ECORRUPT; /* the writes of the one before are missing */
        if (len < 15)
            return CS_ECORRUPT;
        uint64_t id = cs_get_le64(q);
        uint8_t state = q[8];
        uint16_t n = cs_get_le16(q + 9);
        if (n < 2 || n > WAL_TXN_PARTS_MAX || len != 15u + 2u * n || state > 2 || part_find(sh, id))
            return CS_ECORRUPT;
        uint16_t parts[WAL_TXN_PARTS_MAX];
        bool mine = false;
        for (uint16_t i = 0; i < n; i++) {
            parts[i] = cs_get_le16(q + 11 + 2 * i);
            mine |= parts[i] == sh->cfg.index;
        }
        uint32_t nw = cs_get_le32(q + 11 + 2u * n);
        if (!mine || nw > CS_TXN_OPS_MAX || (state != SHARD_TXN_DOUBT_PREPARED && nw))
            return CS_ECORRUPT;
        if (state != SHARD_TXN_DOUBT_PREPARED)
            return known_add(sh, id, state == SHARD_TXN_DOUBT_COMMITTED);
        struct txn_part *p = part_new(sh, id, n, parts, nw, 0);
        if (!p)
            return -ENOMEM;
        p->next = sh->txn_parts;
        sh->txn_parts = p;
        sh->txn_load_left = nw;
        return 0;
    }
    struct txn_part *p = sh->txn_parts;
    if (!sh->txn_load_left || !p || len < 11)
        return CS_ECORRUPT;
    uint8_t wt = q[0];
    struct shard_coll *c = coll_find_id(sh, cs_get_le32(q + 1));
    uint16_t kl = cs_get_le16(q + 5);
    uint32_t vl = cs_get_le32(q + 7);
    if ((wt != SHARD_BATCH_PUT && wt != SHARD_BATCH_DEL) || !c || kl == 0 || kl > CS_KEY_MAX ||
        vl > CS_VALUE_MAX || (wt == SHARD_BATCH_DEL && vl) || len < 11u + kl + vl)
        return CS_ECORRUPT;
    uint64_t exp = 0; /* a put with an expiry: 8 more bytes */
    if (len == 11u + kl + vl + 8u && wt == SHARD_BATCH_PUT)
        exp = cs_get_le64(q + 11 + kl + vl);
    if (len != 11u + kl + vl + (exp ? 8u : 0u))
        return CS_ECORRUPT;
    sh->txn_load_left--;
    return part_add_write(sh, p, c, wt, q + 11, kl, q + 11 + kl, vl, exp);
}

/* ---- recovery ---- */

static int replay_prepare(struct shard *sh, const struct wal_rec *rec)
{
    uint64_t id;
    uint16_t n, parts[WAL_TXN_PARTS_MAX];
    if (wal_txn_key_decode(rec->key, rec->klen, &id, &n, parts))
        return CS_ECORRUPT;
    bool mine = false;
    for (uint16_t i = 0; i < n; i++)
        mine |= parts[i] == sh->cfg.index;
    if (!mine || part_find(sh, id))
        return CS_ECORRUPT;
    size_t nw = 0, off = 0;
    while (off < rec->vlen) {
        struct wal_rec sub;
        if (wal_rec_decode(rec->val, rec->vlen, &off, &sub) ||
            (sub.type != WAL_PUT && sub.type != WAL_DEL) || !coll_find_id(sh, sub.coll) ||
            ++nw > CS_BATCH_OPS_MAX)
            return CS_ECORRUPT;
    }
    struct txn_part *p = part_new(sh, id, n, parts, nw, 0);
    if (!p)
        return -ENOMEM;
    off = 0;
    for (size_t i = 0; i < nw; i++) {
        struct wal_rec sub;
        int rc = wal_rec_decode(rec->val, rec->vlen, &off, &sub);
        if (!rc)
            rc = part_add_write(sh, p, coll_find_id(sh, sub.coll),
                                sub.type == WAL_PUT ? SHARD_BATCH_PUT : SHARD_BATCH_DEL, sub.key,
                                sub.klen, sub.val, sub.vlen, sub.expire_ms);
        if (rc) {
            part_free(sh, p);
            return rc;
        }
    }
    p->next = sh->txn_parts;
    sh->txn_parts = p;
    return 0;
}

int txn_replay(struct shard *sh, uint64_t lsn, const struct wal_rec *rec)
{
    (void)lsn;
    if (rec->type == WAL_TXN_PREPARE)
        return replay_prepare(sh, rec);
    uint64_t id = cs_get_le64(rec->key);
    struct txn_part *p = part_find(sh, id);
    bool commit = rec->type == WAL_TXN_COMMIT;
    if (!p)
        /* an abort may name a transaction this shard voted no on; a commit never may */
        return commit ? CS_ECORRUPT : known_add(sh, id, false);
    if (p->phase != TXN_PREPARED)
        return CS_ECORRUPT;
    if (commit)
        for (uint32_t i = 0; i < p->nw; i++) {
            const struct txn_write *w = &p->w[i];
            struct wal_rec op = {.type = w->type == SHARD_BATCH_PUT ? WAL_PUT : WAL_DEL,
                                 .coll = w->coll->id,
                                 .key = w->bytes,
                                 .klen = w->klen,
                                 .val = w->bytes + w->klen,
                                 .vlen = w->vlen,
                                 .expire_ms = w->expire_ms};
            int rc = exec_replay_op(sh, &op);
            if (rc == CS_ECORRUPT && op.type == WAL_DEL)
                rc = 0; /* a transaction may delete an absent key */
            if (rc)
                return rc;
        }
    part_unlink(sh, p);
    part_free(sh, p);
    return known_add(sh, id, commit);
}

int exec_txn_indoubt(struct shard *sh, struct shard_req *r)
{
    SHARD_OWNED(sh);
    size_t bytes = 1;
    uint32_t n = 0;
    for (struct txn_part *p = sh->txn_parts; p; p = p->next, n++)
        bytes += 11u + 2u * p->nparts;
    cs_assert(!sh->txn_settling); /* at open: nothing is decided yet */
    for (struct txn_known *k = sh->txn_known; k; k = k->next, n++)
        bytes += 11u;
    uint8_t *out = cs_mem_alloc(sh->arena, bytes);
    if (!out)
        return -ENOMEM;
    size_t off = 0;
    for (struct txn_part *p = sh->txn_parts; p; p = p->next) {
        cs_put_le64(out + off, p->id);
        out[off + 8] = SHARD_TXN_DOUBT_PREPARED;
        cs_put_le16(out + off + 9, p->nparts);
        off += 11;
        for (uint16_t i = 0; i < p->nparts; i++, off += 2)
            cs_put_le16(out + off, p->parts[i]);
    }
    for (struct txn_known *k = sh->txn_known; k; k = k->next) {
        cs_put_le64(out + off, k->id);
        out[off + 8] = k->committed ? SHARD_TXN_DOUBT_COMMITTED : SHARD_TXN_DOUBT_ABORTED;
        cs_put_le16(out + off + 9, 0);
        off += 11;
    }
    r->out = out;
    r->out_len = off;
    r->out_count = n;
    return 0;
}

void exec_txn_forget(struct shard *sh)
{
    SHARD_OWNED(sh);
    while (sh->txn_known) {
        struct txn_known *k = sh->txn_known;
        sh->txn_known = k->next;
        cs_mem_free(k);
    }
}

void txn_close(struct shard *sh)
{
    exec_txn_forget(sh);
    while (sh->ordered_queue) {
        struct shard_req *r = sh->ordered_queue;
        sh->ordered_queue = r->next;
        req_complete(r, CS_ECLOSED);
    }
    sh->ordered_queue_tail = NULL;
    sh->ordered_head = NULL; /* parked on a lock or a range mark: refused below */
    while (sh->range_waiters) {
        struct shard_req *r = sh->range_waiters;
        sh->range_waiters = r->next;
        req_complete(r, CS_ECLOSED);
    }
    sh->range_waiters_tail = NULL;
    sh->range_txn_waiters = 0;
    while (sh->txn_parts || sh->txn_settling) {
        struct txn_part **head = sh->txn_parts ? &sh->txn_parts : &sh->txn_settling;
        struct txn_part *p = *head;
        *head = p->next;
        part_free(sh, p); /* parked waiters move to the queue, refused by the caller next */
    }
    for (unsigned b = 0; sh->locks && b < TXN_LOCK_BUCKETS; b++)
        while (sh->locks[b]) { /* locks held by nobody but waiters cannot remain */
            struct txn_lock *l = sh->locks[b];
            sh->locks[b] = l->next;
            for (struct shard_req *r = l->waiters; r;) {
                struct shard_req *next = r->next;
                req_complete(r, CS_ECLOSED);
                r = next;
            }
            cs_mem_free(l);
        }
    free(sh->locks);
    sh->locks = NULL;
    sh->nlocks = 0;
}
