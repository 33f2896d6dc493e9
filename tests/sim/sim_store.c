/* The simulator's "disk": an in-memory implementation of struct raft_storage that survives a
 * simulated crash (the struct raft does not), with the disk faults of raft-sim's diskfault
 * class. What a node had not handed to this store when it crashed is lost, exactly as on a real
 * machine after a power cut.
 *
 * Contents: hard state, the last snapshot (index, term, configuration, a copy of its image) and
 * the entries after it (copies). Invariants: entries[i].index == snap.index + 1 + i.
 *
 * Snapshot chunks (raft.h "Snapshots"): a batch's chunk is written at its offset into a partial
 * snapshot (a chunk at offset 0 discards the partial one first); the batch that carries the
 * snapshot to install takes the partial snapshot's first snap.bytes bytes as the image. The store
 * trusts the core here on purpose: a partial or mixed image installed is what raft-sim's
 * snap-bytes check must see. A crash and a restart (load) discard the partial snapshot.
 *
 * Atomic batches (struct raft_storage.save): a save writes one batch (snapshot, truncation and
 * entries, hard state) as one frame with one checksum. Faults armed for a save (sim.h):
 * - SIM_DISK_EIO: nothing lands, -EIO;
 * - SIM_DISK_FSYNC: the whole batch lands in the page cache (reads see it), its fsync fails,
 *   -EIO; a crash loses it and everything written after it;
 * - SIM_DISK_TORN: a prefix of the frame lands (the snapshot, the truncation, torn_entries of
 *   the entries, never the hard state: it is written last), -EIO; the caller crashes the node.
 * The image before the first such save is kept (undo); a crash (sim_store_crash) restores it:
 * a torn frame fails its checksum and its whole batch goes, and so does what sat in the page
 * cache. So after any crash the store holds exactly the batches whose save returned 0: never
 * entries without the hard state that came with them, nor the reverse; `mark` records that
 * image so the simulator can check it after every restart. */
#include "sim.h"

#include <cstore.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void ent_free(struct raft_entry *e)
{
    free((void *)e->data);
    e->data = NULL;
}

static void img_destroy(struct sim_image *m)
{
    for (size_t i = 0; i < m->n; i++)
        ent_free(&m->ents[i]);
    free(m->ents);
    free(m->snap_data);
    memset(m, 0, sizeof(*m));
}

static uint64_t img_last(const struct sim_image *m)
{
    return m->snap.index + m->n;
}

static uint64_t img_last_term(const struct sim_image *m)
{
    return m->n ? m->ents[m->n - 1].term : m->snap.term;
}

static void *dup_bytes(const void *p, size_t n)
{
    if (!n)
        return NULL;
    void *d = malloc(n);
    if (!d)
        abort(); /* the simulator has no use for a half-copied disk */
    memcpy(d, p, n);
    return d;
}

/* A deep copy of m into out (out uninitialised). */
static void img_clone(const struct sim_image *m, struct sim_image *out)
{
    *out = *m;
    out->snap_data = dup_bytes(m->snap_data, (size_t)m->snap.bytes);
    out->cap = m->n ? m->n : 1;
    out->ents = malloc(out->cap * sizeof(*out->ents));
    if (!out->ents)
        abort();
    for (size_t i = 0; i < m->n; i++) {
        out->ents[i] = m->ents[i];
        out->ents[i].data = dup_bytes(m->ents[i].data, m->ents[i].len);
    }
}

void sim_store_init(struct sim_store *s)
{
    memset(s, 0, sizeof(*s));
}

static void partial_discard(struct sim_store *s)
{
    free(s->partial.data);
    memset(&s->partial, 0, sizeof(s->partial));
}

void sim_store_destroy(struct sim_store *s)
{
    partial_discard(s);
    img_destroy(&s->img);
    if (s->dirty)
        img_destroy(&s->undo);
    memset(s, 0, sizeof(*s));
}

uint64_t sim_store_last(const struct sim_store *s)
{
    return img_last(&s->img);
}

const struct raft_hard_state *sim_store_durable_hs(const struct sim_store *s)
{
    return s->dirty ? &s->undo.hs : &s->img.hs;
}

uint64_t sim_store_durable_last(const struct sim_store *s)
{
    return img_last(s->dirty ? &s->undo : &s->img);
}

bool sim_store_durable_holds(const struct sim_store *s, uint64_t index, uint64_t term)
{
    const struct sim_image *m = s->dirty ? &s->undo : &s->img;
    if (index <= m->snap.index)
        return index > 0; /* applied there, so committed: the same entry (sm-safety checks it) */
    if (index > img_last(m))
        return false;
    return m->ents[index - m->snap.index - 1].term == term;
}

void sim_store_crash(struct sim_store *s)
{
    partial_discard(s); /* a transfer in the middle is never installed */
    if (!s->dirty)
        return;
    img_destroy(&s->img);
    s->img = s->undo; /* the torn or unsynced frames fail their checksum: all of them go */
    memset(&s->undo, 0, sizeof(s->undo));
    s->dirty = false;
}

struct sim_mark sim_store_mark_now(const struct sim_store *s)
{
    struct sim_mark k = {.hs = s->img.hs,
                         .snap_index = s->img.snap.index,
                         .last = img_last(&s->img),
                         .last_term = img_last_term(&s->img)};
    return k;
}

static int st_load(void *ctx, struct raft_hard_state *hs, struct raft_snapshot *snap,
                   uint64_t *last)
{
    struct sim_store *s = ctx;
    partial_discard(s); /* raft.h: load discards a partial snapshot */
    *hs = s->img.hs;
    *snap = s->img.snap;
    *last = sim_store_last(s);
    return 0;
}

static int st_read(void *ctx, uint64_t lo, uint64_t hi, struct raft_entry *out)
{
    struct sim_store *s = ctx;
    if (lo <= s->img.snap.index || hi > sim_store_last(s) || lo > hi)
        return CS_EINVAL;
    for (uint64_t i = lo; i <= hi; i++)
        out[i - lo] = s->img.ents[i - s->img.snap.index - 1];
    return 0;
}

static void img_truncate(struct sim_image *m, uint64_t from)
{
    while (img_last(m) >= from && m->n > 0) {
        ent_free(&m->ents[m->n - 1]);
        m->n--;
    }
}

static void img_push(struct sim_image *m, const struct raft_entry *e)
{
    if (m->n + 1 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        struct raft_entry *p = realloc(m->ents, cap * sizeof(*p));
        if (!p)
            abort();
        m->ents = p;
        m->cap = cap;
    }
    struct raft_entry c = *e;
    c.data = dup_bytes(e->data, e->len);
    m->ents[m->n++] = c;
}

static void img_set_snap(struct sim_image *m, const struct raft_snapshot *snap, const uint8_t *data)
{
    uint8_t *d = dup_bytes(data, (size_t)snap->bytes);
    free(m->snap_data);
    m->snap = *snap;
    m->snap_data = d;
}

/* Write a chunk into the partial snapshot (offset 0 begins a new one). */
static void partial_write(struct sim_store *s, const struct raft_snapshot *of,
                          const struct raft_chunk *c)
{
    struct sim_partial *p = &s->partial;
    if (c->offset == 0) {
        partial_discard(s);
        p->index = of->index;
        p->transfer = c->transfer;
    }
    uint64_t end = c->offset + c->len;
    if (end > p->cap) {
        uint64_t cap = p->cap ? p->cap : 256;
        while (cap < end)
            cap *= 2;
        uint8_t *d = realloc(p->data, (size_t)cap);
        if (!d)
            abort();
        memset(d + p->cap, 0, (size_t)(cap - p->cap));
        p->data = d;
        p->cap = cap;
    }
    if (c->len)
        memcpy(p->data + c->offset, c->data, c->len);
    if (end > p->len)
        p->len = end;
}

/* The install: the partial snapshot's bytes become the image (zeros where none were written). */
static void partial_install(struct sim_store *s, const struct raft_snapshot *snap)
{
    uint8_t *d = snap->bytes ? calloc(1, (size_t)snap->bytes) : NULL;
    if (snap->bytes && !d)
        abort();
    uint64_t n = s->partial.len < snap->bytes ? s->partial.len : snap->bytes;
    if (n)
        memcpy(d, s->partial.data, (size_t)n);
    free(s->img.snap_data);
    s->img.snap = *snap;
    s->img.snap_data = d;
    partial_discard(s);
}

/* Is the batch well formed against the image (checked before anything lands)? */
static bool batch_valid(const struct sim_image *m, const struct raft_batch *b)
{
    uint64_t snap_index = b->snapshot ? b->snapshot->index : m->snap.index;
    uint64_t last = b->snapshot ? b->snapshot->index : img_last(m);
    if (!b->entries_n)
        return true;
    uint64_t first = b->entries[0].index;
    if (first <= snap_index || first > last + 1)
        return false;
    for (size_t i = 0; i < b->entries_n; i++)
        if (b->entries[i].index != first + i)
            return false;
    return true;
}

static int st_save(void *ctx, const struct raft_batch *b)
{
    struct sim_store *s = ctx;
    uint8_t fault = s->fault;
    s->fault = SIM_DISK_OK;
    if (!batch_valid(&s->img, b))
        return CS_EINVAL;
    if (fault == SIM_DISK_EIO)
        return -EIO;
    if (fault != SIM_DISK_OK && !s->dirty) {
        img_clone(&s->img, &s->undo); /* what the disk holds under the page cache */
        s->dirty = true;
    }
    struct sim_image *m = &s->img;
    if (b->chunk)
        partial_write(s, b->chunk_of, b->chunk);
    if (b->snapshot) {
        for (size_t i = 0; i < m->n; i++)
            ent_free(&m->ents[i]);
        m->n = 0;
        partial_install(s, b->snapshot);
    }
    size_t n = b->entries_n;
    if (fault == SIM_DISK_TORN && s->torn_entries < n)
        n = s->torn_entries;
    if (b->entries_n)
        img_truncate(m, b->entries[0].index);
    for (size_t i = 0; i < n; i++)
        img_push(m, &b->entries[i]);
    if (fault == SIM_DISK_TORN)
        return -EIO; /* the hard state, written last, never landed */
    if (b->hard_state)
        m->hs = *b->hard_state;
    if (fault != SIM_DISK_OK)
        return -EIO; /* SIM_DISK_FSYNC: in the page cache only */
    if (!s->dirty) {
        s->saves++;
        s->mark = sim_store_mark_now(s);
    }
    return 0;
}

int sim_store_compact(struct sim_store *s, const struct raft_snapshot *snap, const uint8_t *data)
{
    struct sim_image *m = &s->img;
    if (snap->index <= m->snap.index || snap->index > img_last(m))
        return CS_EINVAL;
    size_t drop = (size_t)(snap->index - m->snap.index);
    for (size_t i = 0; i < drop; i++)
        ent_free(&m->ents[i]);
    memmove(m->ents, m->ents + drop, (m->n - drop) * sizeof(*m->ents));
    m->n -= drop;
    img_set_snap(m, snap, data);
    if (!s->dirty)
        s->mark = sim_store_mark_now(s);
    return 0;
}

void sim_store_ops(struct sim_store *s, struct raft_storage *ops)
{
    ops->ctx = s;
    ops->load = st_load;
    ops->read_entries = st_read;
    ops->save = st_save;
}
