/* The collection catalog of one shard.
 *
 * Each shard keeps its own catalog: a collection exists on a shard once a WAL_COLL_CREATE record
 * (shard-local id, name) is logged, which happens on the first put into it or on an explicit
 * create broadcast to every shard. A drop logs WAL_COLL_DROP. Ids are never reused, so replay of
 * a dropped collection's records is unambiguous. Two hash tables (by name, by id) find a
 * collection; the by-name chains are also read lock-free by application threads (release stores
 * on link; a dropped collection's memory is freed after an epoch grace period). A collection's
 * memory lives until the last snapshot on it is released (refs). Changed collections go on the
 * dirty list that views (views.c) publish from. Tree bytes are accounted per shard
 * (memory_limit). */
#include "shards/shard_int.h"

/* ---- catalog ---- */

struct shard_coll *coll_find(struct shard *sh, const char *name, size_t len)
{
    SHARD_OWNED(sh);
    struct shard_coll *c = sh->by_name[name_bucket(name, len)];
    for (; c; c = c->next_name)
        if (c->name_len == len && memcmp(c->name, name, len) == 0)
            return c;
    return NULL;
}

struct shard_coll *coll_find_id(struct shard *sh, uint32_t id)
{
    SHARD_OWNED(sh);
    struct shard_coll *c = sh->by_id[id & (COLL_BUCKETS - 1)];
    for (; c; c = c->next_id)
        if (c->id == id)
            return c;
    return NULL;
}

static void coll_free_cb(ck_epoch_entry_t *e)
{
    struct shard_coll *c =
        (struct shard_coll *)((char *)e - offsetof(struct shard_coll, epoch_entry));
    cs_epoch_grace();
    c->sh->retired--;
    cs_mem_free(c);
}

/* The last reference frees the tree now and the struct after a grace period: a reader may still
 * be walking a hash chain through it. */
void coll_unref(struct shard *sh, struct shard_coll *c)
{
    SHARD_OWNED(sh);
    cs_assert(c->refs > 0);
    if (--c->refs > 0)
        return;
    sh->tree_bytes -= c->tree.bytes;
    btree_destroy(&c->tree);
    sh->retired++;
    ck_epoch_call(sh->erec, &c->epoch_entry, coll_free_cb);
}

/* c changed: its view must be taken again before it is published. */
void coll_dirty(struct shard *sh, struct shard_coll *c)
{
    SHARD_OWNED(sh);
    sh->wseq++;
    if (c->dirty)
        return;
    c->dirty = true;
    c->refs++;
    c->next_dirty = sh->dirty;
    sh->dirty = c;
}

/* Catalog links are read by lock-free readers: they are stored with release. */
struct shard_coll *coll_add(struct shard *sh, uint32_t id, const char *name, size_t len)
{
    SHARD_OWNED(sh);
    cs_assert(len > 0 && len <= CS_NAME_MAX);
    struct shard_coll *c = cs_mem_alloc(sh->arena, sizeof(*c));
    if (!c)
        return NULL;
    memset(c, 0, sizeof(*c));
    c->id = id;
    c->refs = 1;
    c->name_len = (uint8_t)len;
    c->sh = sh;
    memcpy(c->name, name, len);
    btree_init(&c->tree, sh->arena);
    uint32_t b = name_bucket(name, len);
    c->next_name = sh->by_name[b];
    link_store(&sh->by_name[b], c);
    c->next_id = sh->by_id[id & (COLL_BUCKETS - 1)];
    sh->by_id[id & (COLL_BUCKETS - 1)] = c;
    c->next_all = sh->colls;
    link_store(&sh->colls, c);
    if (id >= sh->next_coll_id)
        sh->next_coll_id = id + 1;
    sh->stats.collections++;
    coll_dirty(sh, c);
    return c;
}

void coll_remove(struct shard *sh, struct shard_coll *c)
{
    SHARD_OWNED(sh);
    struct shard_coll **p = &sh->by_name[name_bucket(c->name, c->name_len)];
    while (*p != c)
        p = &(*p)->next_name;
    link_store(p, c->next_name);
    p = &sh->by_id[c->id & (COLL_BUCKETS - 1)];
    while (*p != c)
        p = &(*p)->next_id;
    *p = c->next_id;
    for (p = &sh->colls; *p != c;) /* O(collections): drops are rare */
        p = &(*p)->next_all;
    link_store(p, c->next_all);
    __atomic_store_n(&c->dropped, true, __ATOMIC_RELEASE);
    coll_dirty(sh, c);
    sh->stats.collections--;
    sh->stats.records -= c->tree.count;
    coll_unref(sh, c);
}

/* Tree bytes are accounted per shard: callers wrap each tree change in these two. */
uint64_t tree_bytes_before(const struct shard_coll *c)
{
    return c->tree.bytes;
}

void tree_bytes_after(struct shard *sh, const struct shard_coll *c, uint64_t before,
                      uint64_t count_before)
{
    SHARD_OWNED(sh);
    sh->tree_bytes += c->tree.bytes - before;
    if (sh->tree_bytes > sh->tree_bytes_peak)
        sh->tree_bytes_peak = sh->tree_bytes;
    if (!c->dropped)
        sh->stats.records += c->tree.count - count_before;
}
