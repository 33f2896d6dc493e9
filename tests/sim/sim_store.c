/* The simulator's "disk": an in-memory implementation of struct raft_storage that survives a
 * simulated crash (the struct raft does not). What a node had not handed to this store when it
 * crashed is lost, exactly as on a real machine after a power cut.
 *
 * Contents: hard state, the last snapshot (index, term, configuration, data copy) and the
 * entries after it (copies). Invariants: entries[i].index == snap.index + 1 + i. */
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

void sim_store_init(struct sim_store *s)
{
    memset(s, 0, sizeof(*s));
}

void sim_store_destroy(struct sim_store *s)
{
    for (size_t i = 0; i < s->n; i++)
        ent_free(&s->ents[i]);
    free(s->ents);
    free((void *)s->snap.data);
    memset(s, 0, sizeof(*s));
}

uint64_t sim_store_last(const struct sim_store *s)
{
    return s->snap.index + s->n;
}

static int st_load(void *ctx, struct raft_hard_state *hs, struct raft_snapshot *snap,
                   uint64_t *last)
{
    struct sim_store *s = ctx;
    *hs = s->hs;
    *snap = s->snap;
    *last = sim_store_last(s);
    return 0;
}

static int st_read(void *ctx, uint64_t lo, uint64_t hi, struct raft_entry *out)
{
    struct sim_store *s = ctx;
    if (lo <= s->snap.index || hi > sim_store_last(s) || lo > hi)
        return CS_EINVAL;
    for (uint64_t i = lo; i <= hi; i++)
        out[i - lo] = s->ents[i - s->snap.index - 1];
    return 0;
}

static int st_truncate(void *ctx, uint64_t from)
{
    struct sim_store *s = ctx;
    if (from <= s->snap.index)
        return CS_EINVAL;
    while (sim_store_last(s) >= from) {
        ent_free(&s->ents[s->n - 1]);
        s->n--;
    }
    return 0;
}

static int st_append(void *ctx, const struct raft_entry *es, size_t n)
{
    struct sim_store *s = ctx;
    if (n == 0)
        return 0;
    if (es[0].index != sim_store_last(s) + 1)
        return CS_EINVAL;
    if (s->n + n > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < s->n + n)
            cap *= 2;
        struct raft_entry *p = realloc(s->ents, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        s->ents = p;
        s->cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        struct raft_entry e = es[i];
        if (e.len) {
            uint8_t *d = malloc(e.len);
            if (!d)
                return -ENOMEM;
            memcpy(d, es[i].data, e.len);
            e.data = d;
        }
        s->ents[s->n++] = e;
    }
    return 0;
}

static int st_save_hs(void *ctx, const struct raft_hard_state *hs)
{
    struct sim_store *s = ctx;
    s->hs = *hs;
    return 0;
}

static int set_snap(struct sim_store *s, const struct raft_snapshot *snap)
{
    uint8_t *d = NULL;
    if (snap->len) {
        d = malloc(snap->len);
        if (!d)
            return -ENOMEM;
        memcpy(d, snap->data, snap->len);
    }
    free((void *)s->snap.data);
    s->snap = *snap;
    s->snap.data = d;
    return 0;
}

static int st_save_snap(void *ctx, const struct raft_snapshot *snap)
{
    struct sim_store *s = ctx;
    for (size_t i = 0; i < s->n; i++)
        ent_free(&s->ents[i]);
    s->n = 0;
    return set_snap(s, snap);
}

int sim_store_compact(struct sim_store *s, const struct raft_snapshot *snap)
{
    if (snap->index <= s->snap.index || snap->index > sim_store_last(s))
        return CS_EINVAL;
    size_t drop = (size_t)(snap->index - s->snap.index);
    for (size_t i = 0; i < drop; i++)
        ent_free(&s->ents[i]);
    memmove(s->ents, s->ents + drop, (s->n - drop) * sizeof(*s->ents));
    s->n -= drop;
    return set_snap(s, snap);
}

void sim_store_ops(struct sim_store *s, struct raft_storage *ops)
{
    ops->ctx = s;
    ops->load = st_load;
    ops->read_entries = st_read;
    ops->append = st_append;
    ops->truncate_suffix = st_truncate;
    ops->save_hard_state = st_save_hs;
    ops->save_snapshot = st_save_snap;
}
