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

/* One SHARD_GUEST request per shard: guests[i], or NULL for every shard when guests is NULL. */
static int set_guests(cs_db *db, const struct shard_guest *const *guests)
{
    int first = 0;
    for (unsigned i = 0; i < db->nshards; i++) {
        struct waiter w;
        waiter_init(&w, SHARD_GUEST);
        w.req.guest = guests ? guests[i] : NULL;
        int rc = db_call(db, i, &w);
        if (rc && !first)
            first = rc;
    }
    return first;
}

int host_attach(cs_db *db, const struct shard_guest *const *guests)
{
    if (!db || !guests)
        return CS_EINVAL;
    return set_guests(db, guests);
}

void host_detach(cs_db *db)
{
    if (db)
        (void)set_guests(db, NULL); /* a shard that is gone has no guest to detach */
}

void host_wake(cs_db *db, unsigned shard)
{
    cs_assert(shard < db->nshards);
    shard_wake(db->shards[shard]);
}
