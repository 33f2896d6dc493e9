/* Atomic write batches.
 *
 * A cs_batch copies its keys, values and names into chunks that never move (so the operations
 * can point into them), and keeps an array of operations. cs_write() routes the batch: when
 * every key lives on one shard, the shard applies all operations or none (rolling back through
 * copy-on-write snapshots if memory runs out) and logs them as one WAL record. A batch that spans
 * shards commits as a transaction without reads (engine/txn.c: a PREPARE on each shard, one fsync
 * round); cs_key_shard() tells the application which keys share a shard. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/db.h"
#include "engine/txn.h"

#define BATCH_CHUNK_BYTES (64u * 1024u)

struct batch_chunk {
    struct batch_chunk *next; /* older chunk */
    size_t used;              /* bytes used in data */
    size_t cap;               /* bytes in data */
    uint8_t data[];           /* copies of keys, values, names */
};

struct cs_batch {
    struct shard_batch_op *ops; /* operations */
    size_t count;               /* used entries */
    size_t cap;                 /* allocated entries */
    size_t bytes;               /* key + value bytes (CS_BATCH_BYTES_MAX) */
    struct batch_chunk *chunk;  /* newest chunk */
};

cs_batch *cs_batch_new(void)
{
    return calloc(1, sizeof(cs_batch));
}

void cs_batch_clear(cs_batch *b)
{
    if (!b)
        return;
    while (b->chunk) {
        struct batch_chunk *next = b->chunk->next;
        free(b->chunk);
        b->chunk = next;
    }
    b->count = 0;
    b->bytes = 0;
}

void cs_batch_free(cs_batch *b)
{
    if (!b)
        return;
    cs_batch_clear(b);
    free(b->ops);
    free(b);
}

size_t cs_batch_count(const cs_batch *b)
{
    return b ? b->count : 0;
}

static void *batch_copy(cs_batch *b, const void *src, size_t len)
{
    if (len == 0)
        return NULL;
    struct batch_chunk *c = b->chunk;
    if (!c || c->cap - c->used < len) {
        size_t cap = cs_max_size(BATCH_CHUNK_BYTES, len);
        c = malloc(sizeof(*c) + cap);
        if (!c)
            return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = b->chunk;
        b->chunk = c;
    }
    void *dst = c->data + c->used;
    memcpy(dst, src, len);
    c->used += len;
    return dst;
}

static int batch_add(cs_batch *b, uint8_t type, const char *coll, const void *key, size_t klen,
                     const void *val, size_t vlen, uint64_t expire_ms)
{
    if (!b)
        return CS_EINVAL;
    uint16_t nlen;
    int rc = db_check_record(coll, key, klen, val, vlen, &nlen);
    if (!rc)
        rc = db_check_expiry(expire_ms);
    if (rc)
        return rc;
    if (b->count == CS_BATCH_OPS_MAX || b->bytes + klen + vlen > CS_BATCH_BYTES_MAX)
        return CS_EBATCH;
    if (b->count == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        struct shard_batch_op *ops = realloc(b->ops, cap * sizeof(*ops));
        if (!ops)
            return -ENOMEM;
        b->ops = ops;
        b->cap = cap;
    }
    struct shard_batch_op op = {.type = type,
                                .coll_len = (uint8_t)nlen,
                                .klen = (uint32_t)klen,
                                .vlen = (uint32_t)vlen,
                                .expire_ms = expire_ms};
    op.coll = batch_copy(b, coll, nlen);
    op.key = batch_copy(b, key, klen);
    op.val = batch_copy(b, val, vlen);
    if (!op.coll || !op.key || (vlen && !op.val))
        return -ENOMEM;
    b->ops[b->count++] = op;
    b->bytes += klen + vlen;
    return 0;
}

int cs_batch_put(cs_batch *b, const char *coll, const void *key, size_t klen, const void *val,
                 size_t vlen)
{
    return batch_add(b, SHARD_BATCH_PUT, coll, key, klen, val, vlen, 0);
}

int cs_batch_put_ttl(cs_batch *b, const char *coll, const void *key, size_t klen, const void *val,
                     size_t vlen, uint64_t expire_at_ms)
{
    return batch_add(b, SHARD_BATCH_PUT, coll, key, klen, val, vlen, expire_at_ms);
}

int cs_batch_del(cs_batch *b, const char *coll, const void *key, size_t klen)
{
    return batch_add(b, SHARD_BATCH_DEL, coll, key, klen, NULL, 0, 0);
}

int cs_key_shard(const cs_db *db, const void *key, size_t klen, unsigned *shard)
{
    if (!db || !shard)
        return CS_EINVAL;
    int rc = db_check_key(key, klen);
    if (rc)
        return rc;
    *shard = db_shard_of(db, key, klen);
    return 0;
}

/* A batch over several shards: a transaction with no reads. */
static int write_spanning(cs_db *db, const cs_batch *b)
{
    struct txn_op *ops = malloc(b->count * sizeof(*ops));
    if (!ops)
        return -ENOMEM;
    for (size_t i = 0; i < b->count; i++) {
        ops[i].shard = db_shard_of(db, b->ops[i].key, b->ops[i].klen);
        ops[i].op = b->ops[i];
    }
    int rc = txn_commit_ops(db, ops, b->count, NULL, 0);
    free(ops);
    return rc;
}

int cs_write(cs_db *db, const cs_batch *b)
{
    if (!db || !b)
        return CS_EINVAL;
    if (b->count == 0)
        return 0;
    unsigned shard = db_shard_of(db, b->ops[0].key, b->ops[0].klen);
    for (size_t i = 1; i < b->count; i++)
        if (db_shard_of(db, b->ops[i].key, b->ops[i].klen) != shard)
            return write_spanning(db, b);
    struct waiter w;
    waiter_init(&w, SHARD_BATCH);
    w.req.ops = b->ops;
    w.req.nops = b->count;
    return db_call(db, shard, &w);
}
