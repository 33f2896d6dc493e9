/* What a program that hosts its own code in the shard loops needs from the engine beyond
 * cstore.h: the network server (server/) runs each connection on one shard's thread, through
 * that shard's io_uring (DESIGN.md section 6). Internal: the project's own server uses it; it is
 * not part of the public API. */
#ifndef CS_HOST_H
#define CS_HOST_H

#include <stdbool.h>

#include "cstore.h"
#include "shards/shard.h"

/* The database's shard count. */
unsigned host_shards(const cs_db *db);
/* The shard that owns key (as every request routes it). */
unsigned host_shard_of(const cs_db *db, const void *key, size_t klen);
/* Attach guests[i] to shard i's loop for every shard (a NULL entry detaches that shard's guest),
 * and return once every shard did. guests[i] must stay valid until it is detached. Errors:
 * CS_EINVAL, CS_ECLOSED (a shard is gone: the others may have attached theirs). */
CS_MUST_CHECK int host_attach(cs_db *db, const struct shard_guest *const *guests);
/* Detach every shard's guest (it must have nothing in flight) and return once every shard did.
 * Allocates nothing, so it cannot fail. */
void host_detach(cs_db *db);
/* Wake shard i's loop (any thread), after handing its guest work. */
void host_wake(cs_db *db, unsigned shard);
/* A session whose completions call notify(arg) (on the completing shard's thread, after the
 * completion can be reaped) instead of waking a thread that sleeps in cs_session_poll: its owner
 * sleeps in its own event loop. Reap with cs_session_poll(s, out, max, 0): never block in it
 * from a shard thread. Errors as cs_session_open. */
CS_MUST_CHECK int host_session_open(cs_db *db, unsigned depth, void (*notify)(void *arg), void *arg,
                                    cs_session **s);
/* A read-modify-write of one key, atomic on its shard (SHARD_UPDATE: see struct shard_update in
 * shards/shard.h): u->fn decides on the key's shard thread what to write from what the key holds.
 * u stays valid until the completion is reaped; the completion's rc is fn's error or the write's
 * (0 also when fn chose to write nothing). Errors at submission as cs_session_put's. */
CS_MUST_CHECK int host_session_update(cs_session *s, const char *coll, const void *key, size_t klen,
                                      const struct shard_update *u, uint64_t user_data);
/* Whether completions wait to be reaped (the owner's thread). */
bool host_session_ready(cs_session *s);

#endif
