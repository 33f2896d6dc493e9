/* Hosting code in the shard loops (see engine/host.h): the engine side of the network server.
 * host_attach sends one SHARD_GUEST request to every shard, so that each loop sets its guest
 * pointer on its own thread between two iterations; sessions with a notify callback live in
 * engine/session.c. */
#include "engine/host.h"

#include "engine/db.h"

unsigned host_shards(const cs_db *db)
{
    return db->nshards;
}

unsigned host_shard_of(const cs_db *db, const void *key, size_t klen)
{
    return db_shard_of(db, key, klen);
}

int host_attach(cs_db *db, const struct shard_guest *const *guests)
{
    if (!db || !guests)
        return CS_EINVAL;
    int first = 0;
    for (unsigned i = 0; i < db->nshards; i++) {
        struct waiter w;
        waiter_init(&w, SHARD_GUEST);
        w.req.guest = guests[i];
        int rc = db_call(db, i, &w);
        if (rc && !first)
            first = rc;
    }
    return first;
}

void host_wake(cs_db *db, unsigned shard)
{
    cs_assert(shard < db->nshards);
    shard_wake(db->shards[shard]);
}
