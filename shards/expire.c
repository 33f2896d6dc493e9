/* The background reclaim of expired records (active expiry, as Redis has it).
 *
 * Readers already hide a record whose expiry has passed (exec.c, views.c, the cursors): this
 * room removes such records for good, so that they stop holding memory, and so that the log says
 * they are gone: each one is deleted through the shard's ordinary delete path (undo, a WAL
 * delete record flagged WAL_REC_HAD_EXPIRY), so recovery, the change feed and later replicas see
 * the same thing as this shard.
 *
 * THE SWEEP. While a record with an expiry may exist on the shard (expire_hint: set by every put
 * with an expiry, checkpoint load and replay included), a timer (TAG_EXPIRE) makes a pass due
 * every EXPIRE_PERIOD_MS. A pass takes an O(1) snapshot of one collection's tree, looks at up to
 * EXPIRE_SCAN_MAX records from where the last pass stopped (expire_coll, expire_key), notes up to
 * EXPIRE_DEL_MAX expired keys, releases the snapshot, then deletes them. A pass that filled its
 * EXPIRE_DEL_MAX keeps the next pass due at once (the loop does not sleep: much has expired);
 * else the next one waits for the timer. When the sweep has visited every collection without
 * meeting a record with an expiry, expire_hint is cleared and the timer stops: a shard without
 * expiring records does no reclaim work at all, and a put or get without an expiry pays nothing
 * for this room. Collections are visited in the catalog's list order; one dropped meanwhile
 * restarts the sweep.
 *
 * A pass is skipped while the shard is read-only (io_error), fenced or stopping; it comes again
 * with the timer. Locks of prepared transactions do not stop it: deleting an expired record
 * changes nothing any reader sees (reads, validation and range checks all skip it already), and
 * an install that writes the key later overwrites it (a delete of the missing key is a no-op).
 *
 * COSTS. A pass: one snapshot (no node is copied: the snapshot is released before the deletes),
 * one seek, EXPIRE_SCAN_MAX leaf steps, one clock read, and per expired record one delete (a
 * descent and a WAL record of its key). A full sweep of n records takes n / EXPIRE_SCAN_MAX
 * periods, so an expired record may hold memory that long after its expiry (readers never see
 * it meanwhile). */
#include "shards/shard_int.h"

/* Where the sweep is: the collection to look at next, or NULL (start a new sweep). */
static struct shard_coll *sweep_coll(struct shard *sh)
{
    if (sh->expire_coll == 0)
        return NULL;
    struct shard_coll *c = coll_find_id(sh, sh->expire_coll - 1);
    if (!c) { /* dropped: start over */
        sh->expire_coll = 0;
        sh->expire_klen = 0;
    }
    return c;
}

/* The sweep moves on to the collection after c (NULL: it starts over). At the end of a sweep
 * that met no record with an expiry, the reclaim goes to sleep until the next such put. */
static void sweep_next(struct shard *sh, struct shard_coll *c)
{
    struct shard_coll *next = c ? c->next_all : sh->colls;
    sh->expire_klen = 0;
    if (next) {
        sh->expire_coll = next->id + 1;
        return;
    }
    sh->expire_coll = 0;
    if (c && !sh->expire_seen)
        sh->expire_hint = false;
    sh->expire_seen = false;
}

/* Look at up to EXPIRE_SCAN_MAX records of c from the sweep's position; copy the expired ones'
 * keys into sh->expire_keys (each CS_KEY_MAX bytes apart, lengths in klens). Returns how many. */
static unsigned pass_scan(struct shard *sh, struct shard_coll *c, uint16_t *klens)
{
    struct btree_snap snap;
    uint64_t before = tree_bytes_before(c), tcount = c->tree.count;
    btree_snap_take(&c->tree, &snap);
    struct btree_cursor cur;
    btree_cursor_init(&cur, &snap);
    bool on = sh->expire_klen ? btree_cursor_seek(&cur, sh->expire_key, sh->expire_klen)
                              : btree_cursor_first(&cur);
    uint64_t now_ms = cs_clock_ms();
    unsigned n = 0, looked = 0;
    for (; on && looked < EXPIRE_SCAN_MAX && n < EXPIRE_DEL_MAX; looked++) {
        uint64_t exp = btree_cursor_expiry(&cur);
        if (exp) {
            sh->expire_seen = true;
            if (cs_expired_at(exp, now_ms)) {
                const void *k, *v;
                size_t kl, vl;
                btree_cursor_get(&cur, &k, &kl, &v, &vl);
                memcpy(sh->expire_keys + (size_t)n * CS_KEY_MAX, k, kl);
                klens[n++] = (uint16_t)kl;
            }
        }
        on = btree_cursor_next(&cur);
    }
    if (on) { /* the next pass starts at the record the cursor is on */
        const void *k, *v;
        size_t kl, vl;
        btree_cursor_get(&cur, &k, &kl, &v, &vl);
        memcpy(sh->expire_key, k, kl);
        sh->expire_klen = (uint16_t)kl;
    }
    btree_snap_release(&c->tree, &snap);
    tree_bytes_after(sh, c, before, tcount);
    if (!on)
        sweep_next(sh, c);
    return n;
}

/* One pass; returns whether it filled EXPIRE_DEL_MAX (more is likely expired). */
static bool expire_pass(struct shard *sh)
{
    if (!sh->expire_keys) {
        sh->expire_keys = cs_mem_alloc(sh->arena, (size_t)EXPIRE_DEL_MAX * CS_KEY_MAX);
        if (!sh->expire_keys)
            return false; /* try again at the next period */
    }
    struct shard_coll *c = sweep_coll(sh);
    if (!c) {
        sweep_next(sh, NULL);
        c = sweep_coll(sh);
        if (!c) {
            sh->expire_hint = false; /* no collection at all */
            return false;
        }
    }
    uint16_t klens[EXPIRE_DEL_MAX];
    unsigned n = pass_scan(sh, c, klens);
    for (unsigned i = 0; i < n; i++) {
        int rc = exec_expire_del(sh, c, sh->expire_keys + (size_t)i * CS_KEY_MAX, klens[i]);
        if (rc && rc != CS_ENOTFOUND)
            return false; /* out of memory: the next period tries again */
    }
    return n == EXPIRE_DEL_MAX;
}

void expire_poll(struct shard *sh)
{
    SHARD_OWNED(sh);
    if (!sh->expire_hint || sh->stopping)
        return;
    if (sh->expire_due) {
        sh->expire_due = false;
        bool can = !sh->io_error && !sh->fenced;
        if (can && (!sh->wal_on || wal_open_bytes(&sh->wal) < WAL_FRAME_SOFT_BYTES))
            sh->expire_due = expire_pass(sh);
    }
    if (sh->expire_hint && !sh->expire_due && !sh->expire_armed) {
        sh->expire_ts.tv_sec = 0;
        sh->expire_ts.tv_nsec = (long long)EXPIRE_PERIOD_MS * 1000000;
        sh->expire_armed = io_ring_timeout(&sh->ring, &sh->expire_ts, TAG_EXPIRE) == 0;
    }
}

void expire_free(struct shard *sh)
{
    cs_mem_free(sh->expire_keys);
    sh->expire_keys = NULL;
}
